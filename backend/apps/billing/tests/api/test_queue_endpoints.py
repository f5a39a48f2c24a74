"""Status, per-contact listing and pause/resume/cancel."""

from __future__ import annotations

import pytest

from apps.billing.models import BillingContact, BillingQueue
from apps.billing.tests.support.api import contacts

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue_id(api) -> str:
    batch = contacts(5)
    for i, contact in enumerate(batch):
        contact["external_id"] = f"c-{i}"
    return api.send("notification", {"external_id": "q", "contacts": batch}).json()["queue_id"]


def control(api, queue_id, action):
    return api.post(f"/api/v1/billing/queue/{queue_id}/control", {"action": action})


def test_status_reports_counters_progress_and_times(api, queue_id, django_assert_max_num_queries):
    with django_assert_max_num_queries(1):
        response = api.get(f"/api/v1/billing/queue/{queue_id}/status")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "pending" and body["template_type"] == "notification"
    assert body["counters"] == {
        "total": 5,
        "pending": 5,
        "sent": 0,
        "delivered": 0,
        "read": 0,
        "failed": 0,
        "cancelled": 0,
        "skipped": 0,
        "replied": 0,
    }
    assert body["progress_percent"] == 0.0
    assert body["eta"] is not None
    for field in ("started_at", "completed_at", "pause_reason", "next_resume_at", "last_heartbeat"):
        assert field in body


def test_status_reads_counters_not_rows(api, queue_id):
    BillingQueue.objects.filter(pk=queue_id).update(sent_count=3, delivered_count=2)
    counters = api.get(f"/api/v1/billing/queue/{queue_id}/status").json()["counters"]
    assert counters["sent"] == 3 and counters["pending"] == 2 and counters["delivered"] == 2


@pytest.mark.parametrize("bad", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_queue_is_404_json(api, bad):
    response = api.get(f"/api/v1/billing/queue/{bad}/status")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_contacts_are_paginated_with_masked_phones(api, queue_id):
    first = api.get(f"/api/v1/billing/queue/{queue_id}/contacts", page_size=2).json()
    assert len(first["results"]) == 2 and first["next"]
    assert first["results"][0]["phone"] == "+55 11 9****-0000"
    assert first["results"][0]["external_id"] == "c-0"
    seen = [r["id"] for r in first["results"]]
    page = first
    while page["next"]:
        page = api.client.get(page["next"], HTTP_X_BILLING_API_KEY=api.raw_key).json()
        seen += [r["id"] for r in page["results"]]
    assert len(seen) == len(set(seen)) == 5


def test_contacts_filter_by_status_and_external_id(api, queue_id):
    BillingContact.objects.filter(queue_id=queue_id, external_id="c-1").update(status="failed")
    failed = api.get(f"/api/v1/billing/queue/{queue_id}/contacts", status="failed").json()["results"]
    assert [r["external_id"] for r in failed] == ["c-1"]
    one = api.get(f"/api/v1/billing/queue/{queue_id}/contacts", external_id="c-3").json()["results"]
    assert [r["external_id"] for r in one] == ["c-3"]
    bad = api.get(f"/api/v1/billing/queue/{queue_id}/contacts", status="nope")
    assert bad.status_code == 400


def test_pause_then_resume(api, queue_id):
    paused = control(api, queue_id, "pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert paused.json()["pause_reason"] == "manual"
    resumed = control(api, queue_id, "resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "pending"


def test_resume_of_a_pending_queue_is_409_with_current_status(api, queue_id):
    response = control(api, queue_id, "resume")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"
    assert response.json()["error"]["details"]["current_status"] == "pending"


def test_cancel_marks_every_unsent_contact_cancelled(api, queue_id):
    BillingContact.objects.filter(queue_id=queue_id, external_id="c-0").update(status="sent")
    BillingQueue.objects.filter(pk=queue_id).update(sent_count=1)
    response = control(api, queue_id, "cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    statuses = sorted(BillingContact.objects.filter(queue_id=queue_id).values_list("status", flat=True))
    assert statuses == ["cancelled"] * 4 + ["sent"]
    assert response.json()["counters"]["cancelled"] == 4 and response.json()["counters"]["pending"] == 0
    assert control(api, queue_id, "pause").status_code == 409
    assert control(api, queue_id, "cancel").status_code == 409


def test_unknown_action_is_400(api, queue_id):
    response = control(api, queue_id, "explode")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
