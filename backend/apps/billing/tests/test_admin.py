"""The admin a person configures the service with: keys shown once, revocation, templates
with inline variations and previews, read-only operations, and tenant isolation."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.billing.constants import API_KEY_PREFIX, ContactStatus
from apps.billing.models import (
    BillingAPIKey,
    BillingConfig,
    BillingTemplate,
    BillingTemplateVariation,
)

from .support.builders import (
    CREDITOR_LINE,
    build_contact,
    build_queue,
    build_template,
    inline_management,
    template_post,
)

pytestmark = pytest.mark.django_db
RAW_KEY = re.compile(r"bk_live_[0-9a-f]{16}_[A-Za-z0-9_\-]{40,}")


def url(name: str, *args) -> str:
    return reverse(f"admin:billing_{name}", args=args)


# --------------------------------------------------------------------------- API keys
def test_creating_a_key_shows_it_exactly_once(superuser_client, tenant):
    response = superuser_client.post(
        url("billingapikey_add"),
        {
            "tenant": str(tenant.pk),
            "name": "ERP",
            "allowed_ips": "10.0.0.0/8\n203.0.113.7",
            "allowed_template_types": ["overdue", "upcoming"],
        },
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    shown = RAW_KEY.findall(response.content.decode())
    assert len(set(shown)) == 1
    key = BillingAPIKey.authenticate_raw(shown[0])
    assert key is not None and key.tenant == tenant
    assert key.allowed_ips == ["10.0.0.0/8", "203.0.113.7"]
    assert key.allowed_template_types == ["overdue", "upcoming"]

    # The secret is everything after the public id: token_urlsafe may itself contain "_" (a split
    # on the last one once gave "Lo", found in RelatedObjectLookups.js).
    secret = shown[0].removeprefix(API_KEY_PREFIX).partition("_")[2]
    assert len(secret) >= 40
    for page in (url("billingapikey_changelist"), url("billingapikey_change", key.pk), "/admin/"):
        body = superuser_client.get(page).content.decode()
        assert secret not in body and shown[0] not in body and key.key_hash not in body
    assert key.display_prefix in superuser_client.get(url("billingapikey_changelist")).content.decode()


def test_invalid_ip_is_a_field_error_and_creates_nothing(superuser_client, tenant):
    response = superuser_client.post(
        url("billingapikey_add"), {"tenant": str(tenant.pk), "name": "ERP", "allowed_ips": "10.0.0.300"}
    )
    assert response.status_code == 200
    assert "Not an IP address or CIDR range: 10.0.0.300" in response.content.decode()
    assert not BillingAPIKey.objects.exists()


def test_tenant_staff_create_keys_for_their_own_tenant(staff_client, tenant, other_tenant):
    response = staff_client.post(url("billingapikey_add"), {"tenant": str(other_tenant.pk), "name": "mine"})
    assert response.status_code == 200
    key = BillingAPIKey.authenticate_raw(RAW_KEY.search(response.content.decode()).group())
    assert key.tenant == tenant


def test_revoke_button_revokes_in_one_click(superuser_client, tenant):
    key, raw = BillingAPIKey.issue(tenant=tenant, name="ERP")
    page = superuser_client.get(url("billingapikey_change", key.pk)).content.decode()
    assert url("billingapikey_revoke", key.pk) in page
    response = superuser_client.post(url("billingapikey_revoke", key.pk))
    assert response.status_code == 302
    key.refresh_from_db()
    assert not key.is_active and key.revoked_at is not None
    assert superuser_client.get(url("billingapikey_revoke", key.pk)).status_code == 405


def test_revoke_selected_action(superuser_client, tenant):
    keys = [BillingAPIKey.issue(tenant=tenant, name=f"k{i}")[0] for i in range(3)]
    superuser_client.post(
        url("billingapikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [str(k.pk) for k in keys[:2]]},
    )
    assert sorted(BillingAPIKey.objects.values_list("is_active", flat=True)) == [False, False, True]


def test_staff_cannot_revoke_another_tenants_key(staff_client, other_tenant):
    key, _ = BillingAPIKey.issue(tenant=other_tenant, name="theirs")
    assert staff_client.post(url("billingapikey_revoke", key.pk)).status_code == 404
    key.refresh_from_db()
    assert key.is_active


# --------------------------------------------------------------------------- templates
def test_template_with_variations_is_created_inline(superuser_client, tenant):
    data = template_post(
        "Cobrança",
        [
            {"name": "A", "content": "<b>Olá</b> {{name}}" + CREDITOR_LINE, "weight": "1", "is_active": "on"},
            {"name": "B", "content": "Oi {{first_name}}" + CREDITOR_LINE, "weight": "2", "is_active": "on"},
        ],
        tenant=str(tenant.pk),
    )
    response = superuser_client.post(url("billingtemplate_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    template = BillingTemplate.objects.get(name="Cobrança")
    assert sorted(template.variations.values_list("content", flat=True)) == [
        "Oi {{first_name}}" + CREDITOR_LINE,
        "Olá {{name}}" + CREDITOR_LINE,
    ]


def test_more_than_five_active_variations_is_refused_in_the_form(superuser_client, tenant):
    six = [
        {"name": f"V{i}", "content": "Olá {{name}}" + CREDITOR_LINE, "weight": "1", "is_active": "on"} for i in range(6)
    ]
    response = superuser_client.post(url("billingtemplate_add"), template_post("Too many", six, tenant=str(tenant.pk)))
    assert response.status_code == 200
    assert "A template can have at most 5 active variations." in response.content.decode()
    assert not BillingTemplate.objects.exists()
    six[5].pop("is_active")  # five active + one inactive is fine
    response = superuser_client.post(url("billingtemplate_add"), template_post("Five", six, tenant=str(tenant.pk)))
    assert response.status_code == 302


def test_swapping_the_active_variation_in_one_save_is_allowed(superuser_client, tenant):
    printed = {"content": "Olá {{nome}}" + CREDITOR_LINE}
    template = build_template(tenant, variations=[printed for _ in range(5)] + [{**printed, "is_active": False}])
    variations = list(template.variations.order_by("created_at", "id"))
    data = template_post(template.name, [], **inline_management(6, 6))
    data.pop("template_type")
    for i, variation in enumerate(variations):
        data.update(
            {
                f"variations-{i}-id": str(variation.pk),
                f"variations-{i}-template": str(template.pk),
                f"variations-{i}-name": variation.name,
                f"variations-{i}-content": variation.content,
                f"variations-{i}-weight": "1",
            }
        )
        if i != 0:  # V1 goes inactive, V6 comes in
            data[f"variations-{i}-is_active"] = "on"
    data["tenant"] = str(tenant.pk)
    response = superuser_client.post(url("billingtemplate_change", template.pk), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert set(template.variations.filter(is_active=True).values_list("name", flat=True)) == {
        "V2",
        "V3",
        "V4",
        "V5",
        "V6",
    }


def test_template_syntax_errors_show_on_the_content_field(superuser_client, tenant):
    data = template_post(
        "Broken",
        [{"name": "A", "content": "Olá {{#if name}}sem fim", "weight": "1", "is_active": "on"}],
        tenant=str(tenant.pk),
    )
    response = superuser_client.post(url("billingtemplate_add"), data)
    assert response.status_code == 200
    inline = response.context["inline_admin_formsets"][0].formset
    assert "content" in inline.forms[0].errors
    assert "line 1" in inline.forms[0].errors["content"][0]


def test_preview_endpoint_renders_against_sample_variables(superuser_client, tenant):
    response = superuser_client.post(
        url("billingtemplate_preview"), {"template_type": "overdue", "content": "Olá {{name}}, valor {{amount|money}}"}
    )
    data = response.json()
    assert data["ok"] and data["rendered"] == "Olá Maria Silva, valor R$ 1.234,56"

    data = superuser_client.post(
        url("billingtemplate_preview"), {"template_type": "overdue", "content": "Olá\n {{#if name}}x"}
    ).json()
    assert not data["ok"] and data["error"]["line"] == 2 and data["error"]["column"] is not None

    data = superuser_client.post(
        url("billingtemplate_preview"), {"template_type": "overdue", "content": "Olá {{nome}}"}
    ).json()
    assert not data["ok"] and data["missing"] == ["nome"]
    assert superuser_client.post(url("billingtemplate_preview"), {"content": "x"}).status_code == 400


def test_saved_variations_are_previewed_on_the_change_page(superuser_client, tenant):
    template = build_template(tenant, variations=[{"content": "Olá {{name}}"}])
    page = superuser_client.get(url("billingtemplate_change", template.pk)).content.decode()
    assert "Olá Maria Silva" in page
    assert "billing/admin/variation_preview.js" in page
    data = superuser_client.get(url("billingtemplate_object_preview", template.pk)).json()
    assert data["variations"][0]["rendered"] == "Olá Maria Silva"
    data = superuser_client.post(url("billingtemplate_object_preview", template.pk), {"content": "Oi {{first_name}}"})
    assert data.json()["rendered"] == "Oi Maria"


def test_variation_counters_and_rates_are_read_only_columns(superuser_client, tenant):
    template = build_template(tenant, variations=1)
    BillingTemplateVariation.objects.filter(template=template).update(sent_count=10, delivered_count=9, read_count=4)
    response = superuser_client.get(url("billingtemplate_change", template.pk))
    page = response.content.decode()
    assert "90.0%" in page and "40.0%" in page
    form = response.context["inline_admin_formsets"][0].formset.forms[0]
    assert "sent_count" not in form.fields and "used_count" not in form.fields


def test_staff_duplicate_template_name_is_a_form_error_not_a_crash(staff_client, tenant):
    build_template(tenant, name="Cobrança")
    response = staff_client.post(url("billingtemplate_add"), template_post("Cobrança", []))
    assert response.status_code == 200
    assert "already has a template with this name" in response.content.decode()


# --------------------------------------------------------------------------- tenant isolation
def test_tenant_staff_see_only_their_tenants_rows(staff_client, tenant, other_tenant):
    mine = build_template(tenant, name="mine-template")
    theirs = build_template(other_tenant, name="theirs-template")
    BillingAPIKey.issue(tenant=tenant, name="mine-key")
    BillingAPIKey.issue(tenant=other_tenant, name="theirs-key")
    my_queue, their_queue = build_queue(tenant, template=mine), build_queue(other_tenant, template=theirs)
    build_contact(my_queue, name="Mine Contact")
    build_contact(their_queue, name="Theirs Contact")
    BillingConfig.for_tenant(tenant)
    BillingConfig.for_tenant(other_tenant)

    for model in (
        "billingtemplate",
        "billingapikey",
        "billingqueue",
        "billingcontact",
        "billingcampaign",
        "billingconfig",
    ):
        response = staff_client.get(url(f"{model}_changelist"))
        assert response.status_code == 200, model
        assert list(response.context["cl"].queryset.values_list("tenant", flat=True).distinct()) == [tenant.pk]
        assert "theirs" not in response.content.decode().lower(), model

    for name, obj in (("billingtemplate", theirs), ("billingqueue", their_queue)):
        response = staff_client.get(url(f"{name}_change", obj.pk))
        assert response.status_code == 302 and response["Location"] == reverse("admin:index")
    assert staff_client.get(url("billingtemplate_object_preview", theirs.pk)).status_code == 404


def test_staff_without_membership_see_nothing(client, tenant):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("loner", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="billing"))
    client.force_login(user)
    build_template(tenant)
    assert client.get(url("billingtemplate_changelist")).status_code == 403


def test_staff_cannot_point_their_config_at_another_tenants_instance(staff_client, tenant, other_tenant):
    from apps.connections.models import WhatsAppInstance

    WhatsAppInstance.objects.create(  # theirs: never offered
        tenant=other_tenant, name="x", base_url="http://127.0.0.1:1", api_key="k", instance_name="x"
    )
    mine = WhatsAppInstance.objects.create(
        tenant=tenant, name="m", base_url="http://127.0.0.1:1", api_key="k", instance_name="m"
    )
    response = staff_client.get(url("billingconfig_add"))
    offered = [
        str(value) for value, _ in response.context["adminform"].form.fields["default_instance"].choices if value
    ]
    assert offered == [str(mine.pk)]  # the choices' values (their repr holds a memory address)
    BillingConfig.for_tenant(tenant)
    response = staff_client.post(url("billingconfig_add"), {"messages_per_minute": "20"})
    assert response.status_code == 200 and "already exists" in response.content.decode()


# --------------------------------------------------------------------------- operations (read-only)
def test_contacts_list_shows_masked_phones_and_filters_by_status(superuser_client, queue):
    build_contact(queue, phone="+5511998764321", status=ContactStatus.FAILED)
    build_contact(queue, phone="+5511912345678")
    page = superuser_client.get(url("billingcontact_changelist")).content.decode()
    assert "+55 11 9****-4321" in page
    assert "998764321" not in page and "912345678" not in page
    response = superuser_client.get(url("billingcontact_changelist"), {"status__exact": "failed"})
    assert response.context["cl"].result_count == 1


def test_queue_admin_shows_progress_and_is_read_only(superuser_client, tenant):
    queue = build_queue(
        tenant, total=4, sent_count=1, failed_count=1, status="paused_business_hours", pause_reason="business_hours"
    )
    page = superuser_client.get(url("billingqueue_changelist"), {"status__exact": "paused_business_hours"})
    assert "2/4 (50.0%)" in page.content.decode() and "business_hours" in page.content.decode()
    assert superuser_client.get(url("billingqueue_add")).status_code == 403
    response = superuser_client.get(url("billingqueue_change", queue.pk))
    assert response.status_code == 200 and not response.context["has_change_permission"]
    assert superuser_client.get(url("billingcontact_add")).status_code == 403
    assert superuser_client.get(url("billingcampaign_add")).status_code == 403
