"""Creditor identification (CDC art. 42-A): the tenant records its legal name and a CPF/CNPJ
with valid check digits; a collection template that does not print them is refused when saved,
with a message staff can act on; the worker adds them to every render (the end-to-end erasure
test sends one); a tenant that has not recorded them cannot send a collection message."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.billing.models import BillingTemplate
from apps.billing.templating.engine import BillingTemplateEngine, MissingVariablesError
from apps.billing.tests.support.builders import CREDITOR_LINE, build_staff, build_template, template_post
from apps.tenancy.creditor import creditor_variables
from apps.tenancy.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("given", "stored"), [("390.533.447-05", "39053344705"), ("11.222.333/0001-81", "11222333000181")]
)
def test_a_valid_cpf_or_cnpj_is_stored_as_digits_and_printed_formatted(given, stored):
    tenant = Tenant(name="Clínica", slug="c", creditor_legal_name="Clínica Ltda.", creditor_document=given)
    tenant.full_clean()
    assert tenant.creditor_document == stored
    assert creditor_variables(tenant) == {"creditor_name": "Clínica Ltda.", "creditor_document": given}


@pytest.mark.parametrize("bad", ["390.533.447-06", "11.222.333/0001-82", "123", "000.000.000-00"])
def test_wrong_check_digits_are_refused(bad):
    tenant = Tenant(name="Clínica", slug="c", creditor_legal_name="Clínica Ltda.", creditor_document=bad)
    with pytest.raises(ValidationError) as exc:
        tenant.full_clean()
    assert "creditor_document" in exc.value.message_dict


def test_name_and_document_go_together():
    with pytest.raises(ValidationError, match="juntos"):
        Tenant(name="Clínica", slug="c", creditor_legal_name="Clínica Ltda.").full_clean()


def test_a_collection_template_without_the_creditor_is_refused_in_the_admin(client):
    tenant = Tenant.objects.create(name="Alpha", slug="alpha")
    client.force_login(build_staff(tenant))
    for template_type in ("overdue", "upcoming"):
        data = template_post(
            f"Sem credor {template_type}",
            [{"name": "A", "content": "Pague {{amount|money}}", "weight": "1", "is_active": "on"}],
            template_type,
        )
        response = client.post(reverse("admin:billing_billingtemplate_add"), data)
        assert response.status_code == 200
        assert "precisa identificar o credor" in response.content.decode()
    # Inside a condition it is not printed on every path: still refused.
    conditional = "Pague {{#if creditor_name}}{{creditor_name}} {{creditor_document}}{{/if}}"
    data = template_post("Condicional", [{"name": "A", "content": conditional, "weight": "1", "is_active": "on"}])
    assert (
        "precisa identificar o credor"
        in client.post(reverse("admin:billing_billingtemplate_add"), data).content.decode()
    )
    # A notification needs no creditor; a collection template that prints it is saved.
    data = template_post(
        "Aviso", [{"name": "A", "content": "{{message}}", "weight": "1", "is_active": "on"}], "notification"
    )
    assert client.post(reverse("admin:billing_billingtemplate_add"), data).status_code == 302
    data = template_post(
        "Com credor", [{"name": "A", "content": "Pague" + CREDITOR_LINE, "weight": "1", "is_active": "on"}]
    )
    assert client.post(reverse("admin:billing_billingtemplate_add"), data).status_code == 302
    assert set(BillingTemplate.objects.values_list("name", flat=True)) == {"Aviso", "Com credor"}


def test_without_recorded_creditor_a_collection_message_cannot_render():
    tenant = Tenant.objects.create(name="Alpha", slug="alpha")
    template = build_template(tenant, variations=[{"content": "Pague" + CREDITOR_LINE}])
    content = template.variations.get().content
    with pytest.raises(MissingVariablesError):
        BillingTemplateEngine.render(content, {"creditor_name": "spoofed by a request", **creditor_variables(tenant)})


def test_the_tenant_admin_validates_the_document(admin_client):
    tenant = Tenant.objects.create(name="Alpha", slug="alpha")
    data = {
        "name": "Alpha",
        "slug": "alpha",
        "timezone": tenant.timezone,
        "is_active": "on",
        "creditor_legal_name": "Alpha Serviços Ltda.",
        "creditor_document": "11.222.333/0001-00",
        "legal_basis": "credit_protection",
        "retention_days": "90",
    }
    response = admin_client.post(reverse("admin:tenancy_tenant_change", args=[tenant.pk]), data)
    assert response.status_code == 200 and "CPF ou CNPJ válido" in response.content.decode()
    data["creditor_document"] = "11.222.333/0001-81"
    assert admin_client.post(reverse("admin:tenancy_tenant_change", args=[tenant.pk]), data).status_code == 302
    tenant.refresh_from_db()
    assert (tenant.creditor_document, tenant.retention_days) == ("11222333000181", 90)
