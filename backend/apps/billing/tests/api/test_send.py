"""POST send/{overdue|upcoming|notification}: acceptance, per-contact refusals, idempotency."""

from __future__ import annotations

import threading
from datetime import UTC, timedelta

import pytest
from django.db import connection

from apps.billing.models import BillingCampaign, BillingContact, BillingQueue
from apps.billing.templating.date_calculator import today_in
from apps.billing.tests.support.api import contacts, future, make_tenant, past
from apps.campaigns.models import Campaign, CampaignContact

pytestmark = pytest.mark.django_db


def row_counts() -> tuple[int, ...]:
    return (
        Campaign.objects.count(),
        BillingCampaign.objects.count(),
        BillingQueue.objects.count(),
        CampaignContact.objects.count(),
        BillingContact.objects.count(),
    )


def test_notification_is_accepted_with_queue_and_contacts(api):
    response = api.send("notification", {"external_id": "n-1", "contacts": contacts(3)})
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["accepted"] == 3 and body["rejected"] == [] and body["duplicates_removed"] == 0
    assert body["status"] == "pending"
    assert body["status_url"] == f"/api/v1/billing/queue/{body['queue_id']}/status"
    assert body["eta"] is not None
    queue = BillingQueue.objects.get(pk=body["queue_id"])
    assert queue.tenant == api.tenant and queue.total_contacts == 3 and queue.priority == 1
    assert str(queue.billing_campaign_id) == body["billing_campaign_id"]
    stored = list(BillingContact.objects.filter(queue=queue).order_by("id"))
    assert [c.phone for c in stored] == ["+5511970000000", "+5511970000001", "+5511970000002"]
    assert all(c.variation_id is not None and c.status == "pending" for c in stored)
    assert {c.campaign_contact.campaign_id for c in stored} == {queue.billing_campaign.campaign_id}


def test_overdue_needs_past_due_date_and_amount_per_contact(api):
    batch = [
        {"phone": "11 99876-5432", "name": "Maria", "due_date": past(), "amount": "1234.56"},
        {"phone": "11 99876-5433", "name": "João", "due_date": future(), "amount": 10},
        {"phone": "11 99876-5434", "name": "Ana", "due_date": past()},
        {"phone": "11 99876-5435", "name": "Rui", "amount": 10},
        {"phone": "11 3333-4444", "name": "Fixo", "due_date": past(), "amount": 10},
        {"phone": "11 99876-5436", "name": "Bia", "due_date": "31/02/2026", "amount": 10},
        {"phone": "11 99876-5437", "name": "Leo", "due_date": past(), "amount": "dez reais"},
        {"phone": "11 99876-5438", "name": "Val", "due_date": past(), "amount": "1.234,56"},
    ]
    response = api.send("overdue", {"external_id": "o-1", "contacts": batch})
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "due_date_not_past"),
        (2, "missing_amount"),
        (3, "missing_due_date"),
        (4, "not_mobile"),
        (5, "invalid_due_date"),
        (6, "invalid_amount"),
    ]
    assert body["rejected"][3]["phone"] == "+55 11 3***-4444"  # masked, never the raw number
    amounts = sorted(BillingContact.objects.values_list("amount", flat=True))
    assert [str(a) for a in amounts] == ["1234.56", "1234.56"]


def test_upcoming_accepts_today_in_the_tenant_timezone_and_refuses_the_past(api):
    today = today_in(api.tenant.timezone)
    batch = [
        {"phone": "11 99876-5432", "name": "Hoje", "due_date": today.isoformat(), "amount": 5},
        {"phone": "11 99876-5433", "name": "Ontem", "due_date": (today - timedelta(days=1)).isoformat(), "amount": 5},
    ]
    body = api.send("upcoming", {"external_id": "u-1", "contacts": batch}).json()
    assert body["accepted"] == 1
    assert body["rejected"][0]["code"] == "due_date_in_past"
    assert BillingQueue.objects.get(pk=body["queue_id"]).priority == 5


def test_duplicate_phones_in_one_request_are_sent_once(api):
    note = {"message": "Aviso"}
    batch = [
        {"phone": "(11) 99876-5432", "name": "A", "variables": note},
        {"phone": "+5511998765432", "name": "B", "variables": note},
        {"phone": "11 99876-5433", "name": "C", "variables": note},
    ]
    body = api.send("notification", {"external_id": "d-1", "contacts": batch}).json()
    assert body["accepted"] == 2 and body["duplicates_removed"] == 1
    assert BillingContact.objects.count() == 2


def test_strict_refuses_everything_when_one_contact_is_bad(api):
    before = row_counts()
    response = api.send(
        "notification",
        {"external_id": "s-1", "strict": True, "contacts": contacts(2) + [{"phone": "123", "name": "x"}]},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "contacts_rejected"
    assert response.json()["error"]["details"]["rejected"][0]["index"] == 2
    assert row_counts() == before


def test_zero_valid_contacts_is_422_and_writes_nothing(api):
    before = row_counts()
    response = api.send("notification", {"external_id": "z-1", "contacts": [{"phone": "abc", "name": "x"}]})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "no_valid_contacts"
    assert row_counts() == before


def test_same_external_id_and_content_replays_the_original_answer(api):
    request = {"external_id": "i-1", "contacts": contacts(2)}
    first = api.send("notification", request)
    counts = row_counts()
    again = api.send("notification", dict(reversed(list(request.items()))))  # key order does not matter
    assert first.status_code == 202 and again.status_code == 200
    assert again.json() == first.json()
    assert row_counts() == counts


def test_same_external_id_with_other_content_is_409(api):
    api.send("notification", {"external_id": "i-2", "contacts": contacts(2)})
    response = api.send("notification", {"external_id": "i-2", "contacts": contacts(3)})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"


def test_same_external_id_in_another_type_is_another_campaign(api):
    api.send("notification", {"external_id": "x-1", "contacts": contacts(1)})
    response = api.send("overdue", {"external_id": "x-1", "contacts": contacts(1, due_date=past(), amount=1)})
    assert response.status_code == 202


@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_create_exactly_one_campaign():
    api = make_tenant("gamma")
    request = {"external_id": "race-1", "contacts": contacts(200)}
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def post() -> None:
        barrier.wait()
        try:
            statuses.append(api.send("notification", request).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 202]
    assert BillingCampaign.objects.filter(external_id="race-1").count() == 1
    assert BillingContact.objects.count() == 200


def test_template_by_name_and_default(api):
    body = api.send("notification", {"external_id": "t-1", "template": "Aviso padrão", "contacts": contacts(1)})
    assert body.status_code == 202


@pytest.mark.parametrize(
    "template,code",
    [("no such template", "unknown_template"), ("Cobrança padrão", "template_type_mismatch")],
)
def test_unknown_or_mismatched_template_is_refused(api, template, code):
    response = api.send("notification", {"external_id": "t-2", "template": template, "contacts": contacts(1)})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


def test_unknown_instance_is_refused(api):
    response = api.send("notification", {"external_id": "t-3", "instance": "nope", "contacts": contacts(1)})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_instance"


def test_named_instance_is_used(api):
    body = api.send(
        "notification", {"external_id": "t-4", "instance": api.instance.name, "contacts": contacts(1)}
    ).json()
    assert BillingQueue.objects.get(pk=body["queue_id"]).instance == api.instance


def test_missing_template_variable_is_refused_per_contact(api):
    from apps.billing.models import BillingTemplate, BillingTemplateVariation

    template = BillingTemplate.objects.create(tenant=api.tenant, name="Com protocolo", template_type="notification")
    BillingTemplateVariation.objects.create(
        template=template, name="A", content="Protocolo {{protocol}} para {{name}}."
    )
    batch = [
        {"phone": "11 99876-5432", "name": "A", "variables": {"protocol": "123"}},
        {"phone": "11 99876-5433", "name": "B"},
    ]
    body = api.send("notification", {"external_id": "v-1", "template": "Com protocolo", "contacts": batch}).json()
    assert body["accepted"] == 1
    assert body["rejected"][0]["code"] == "missing_variables"
    assert "protocol" in body["rejected"][0]["message"]


def test_scheduled_for_needs_an_offset(api):
    response = api.send(
        "notification", {"external_id": "sc-1", "scheduled_for": "2026-12-01T09:00:00", "contacts": contacts(1)}
    )
    assert response.status_code == 400
    assert "scheduled_for" in response.json()["error"]["details"]


def test_scheduled_for_is_stored(api):
    from datetime import datetime, timezone

    when = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    local = when.astimezone(timezone(timedelta(hours=-3))).isoformat()
    body = api.send("notification", {"external_id": "sc-2", "scheduled_for": local, "contacts": contacts(1)}).json()
    assert BillingQueue.objects.get(pk=body["queue_id"]).scheduled_for == when


def test_scheduled_for_more_than_a_year_ahead_is_refused(api):
    response = api.send(
        "notification", {"external_id": "sc-3", "scheduled_for": "2099-01-02T09:00:00-03:00", "contacts": contacts(1)}
    )
    assert response.status_code == 400


def test_ingest_statement_count_does_not_grow_with_contacts(api, django_assert_max_num_queries):
    from django.test.utils import CaptureQueriesContext

    def statements(n: int, ext: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert api.send("notification", {"external_id": ext, "contacts": contacts(n)}).status_code == 202
        return len(ctx.captured_queries)

    api.send("notification", {"external_id": "warm-up", "contacts": contacts(1)})  # first use writes last_used_at
    small, large = statements(5, "q-1"), statements(1500, "q-2")
    assert large == small
    with django_assert_max_num_queries(small):
        api.send("notification", {"external_id": "q-3", "contacts": contacts(1000, start=5000)})
