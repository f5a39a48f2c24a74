"""The lean request path (issue 21): what a request costs once its tenant is cached, and that the
cache never outlives a change made through the writers (revocation, admin, setup)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.billing import tenant_context
from apps.billing.models import BillingContact, BillingTemplate, BillingTemplateVariation
from apps.billing.services.tenant_setup import setup_tenant
from apps.billing.tests.support.api import contacts, make_tenant
from apps.common.admin import TenantScopedAdmin

pytestmark = pytest.mark.django_db


def statements(call) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code < 300, response.content
    return [query["sql"] for query in captured.captured_queries]


def send(api, ext: str, n: int = 1):
    return api.send("notification", {"external_id": ext, "contacts": contacts(n)})


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: the statement is its own transaction
def test_a_one_contact_send_is_one_sql_statement_once_the_tenant_is_cached():
    api = make_tenant("solo")
    send(api, "warm-up")  # builds the tenant context, writes last_used_at
    sql = statements(lambda: send(api, "one"))
    assert len(sql) == 1 and sql[0].lstrip().startswith("WITH suppressed AS")


def test_status_and_contacts_read_one_statement_each_beside_the_queue(api):
    queue_id = send(api, "reads", n=3).json()["queue_id"]
    assert len(statements(lambda: api.get(f"/api/v1/billing/queue/{queue_id}/status"))) == 1
    assert len(statements(lambda: api.get(f"/api/v1/billing/queue/{queue_id}/contacts"))) == 2


def test_a_revoked_key_stops_on_the_next_request_although_its_tenant_is_cached(api):
    assert send(api, "before").status_code == 202
    api.key.revoke()
    response = send(api, "after")
    assert response.status_code == 401 and response.json()["error"]["code"] == "api_key_inactive"


def test_a_key_issued_after_the_tenant_was_cached_works_at_once(api):
    assert send(api, "before").status_code == 202
    raw = api.new_key()
    response = api.client.post(
        "/api/v1/billing/send/notification",
        data={"external_id": "new-key", "contacts": contacts(1)},
        format="json",
        HTTP_X_BILLING_API_KEY=raw,
    )
    assert response.status_code == 202


def test_setup_changes_reach_the_next_request(api):
    assert send(api, "before").status_code == 202
    setup_tenant(name=api.tenant.name, slug=api.tenant.slug, messages_per_minute=600)
    assert tenant_context.current_context(api.tenant.pk).config.messages_per_minute == 600


def test_an_admin_save_bumps_the_tenant_version(api, rf):
    context = tenant_context.current_context(api.tenant.pk)
    template = BillingTemplate.objects.get(tenant=api.tenant, template_type="notification", is_default=True)

    class Form:
        instance = template

        def save_m2m(self) -> None:
            pass

    TenantScopedAdmin(BillingTemplate, admin_site=None).save_related(rf.post("/"), Form(), [], True)
    assert tenant_context.current_context(api.tenant.pk).version != context.version


def test_a_variation_deleted_behind_the_cache_is_not_a_server_error(api):
    assert send(api, "before").status_code == 202
    template = BillingTemplate.objects.get(tenant=api.tenant, template_type="notification", is_default=True)
    doomed = list(template.variations.filter(is_active=True))
    BillingTemplateVariation.objects.filter(pk__in=[v.pk for v in doomed[1:]]).delete()  # no version bump
    response = send(api, "after", n=4)
    assert response.status_code == 202, response.content
    chosen = set(
        BillingContact.objects.filter(queue_id=response.json()["queue_id"]).values_list("variation_id", flat=True)
    )
    assert chosen == {doomed[0].pk}


def test_numbers_beyond_64_bits_are_stored_not_a_server_error(api):
    """orjson refuses them; the parser and the statement fall back to the standard library."""
    big = 10**30
    body = (
        f'{{"external_id": "big", "metadata": {{"n": {big}}}, "contacts": [{{"phone": "11 99876-5432", "name": "A", '
        f'"variables": {{"message": "m", "n": {big}}}}}]}}'
    )
    response = api.client.post(
        "/api/v1/billing/send/notification",
        data=body,
        content_type="application/json",
        HTTP_X_BILLING_API_KEY=api.raw_key,
    )
    assert response.status_code == 202, response.content
    contact = BillingContact.objects.get(queue_id=response.json()["queue_id"])
    assert contact.variables["n"] == big and contact.billing_campaign.metadata == {"n": big}
