"""Redis blinks (issue 15, item 4, the API side): sends and status answer 503 in the error shape
with Retry-After — never 500 — and work again by themselves when Redis is back.

The Redis here is a private `redis-server` on a free port, started and stopped by the test: the
shared one serves everybody else's tests."""

from __future__ import annotations

import shutil

import pytest

from apps.billing.models import BillingCampaign, BillingContact
from apps.billing.tests.support.api import contacts

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary"),
]


def body(ext: str) -> dict:
    return {"external_id": ext, "contacts": contacts(1)}


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert error["details"] == {"retry_after": int(response["Retry-After"])}
    assert int(response["Retry-After"]) >= 1


def test_sends_and_status_answer_503_while_redis_is_down_and_recover_by_themselves(api, private_redis):
    first = api.send("notification", body("before"))
    assert first.status_code == 202
    status_path = f"/api/v1/billing/queue/{first.json()['queue_id']}/status"
    assert api.get(status_path).status_code == 200
    campaigns, contacts_written = BillingCampaign.objects.count(), BillingContact.objects.count()

    private_redis.stop()
    assert_unavailable(api.send("notification", body("during")))
    assert_unavailable(api.get(status_path))
    assert_unavailable(api.get(status_path.replace("/status", "/contacts")))
    assert (BillingCampaign.objects.count(), BillingContact.objects.count()) == (campaigns, contacts_written)

    private_redis.start()  # the same port, empty: no script, no version, no counter survived
    again = api.send("notification", body("during"))  # the refused request was never written
    assert again.status_code == 202, again.content
    assert api.get(status_path).status_code == 200
    assert BillingContact.objects.count() == contacts_written + 1


def test_a_key_revoked_while_redis_was_away_is_refused_once_it_is_back(api, private_redis):
    """The version bump a revocation makes is lost with Redis; the flushed Redis answers no
    version at all, which no cached context was built at after the first bump."""
    assert api.send("notification", body("k-1")).status_code == 202
    private_redis.stop()
    api.key.revoke()  # its version bump fails (logged): the caches must not outlive it
    private_redis.start()
    response = api.send("notification", body("k-2"))
    assert response.status_code == 401 and response.json()["error"]["code"] == "api_key_inactive"
