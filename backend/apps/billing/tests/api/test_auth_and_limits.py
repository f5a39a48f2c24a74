"""Authentication, authorisation, throttles, tenant isolation and request limits."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.billing.models import BillingContact
from apps.billing.tests.support.api import contacts

pytestmark = pytest.mark.django_db

SEND = "/api/v1/billing/send/notification"


def body(ext: str = "a-1", n: int = 1) -> dict:
    return {"external_id": ext, "contacts": contacts(n)}


def post(raw_key: str | None, payload=None, **extra):
    headers = {"HTTP_X_BILLING_API_KEY": raw_key} if raw_key is not None else {}
    return APIClient().post(
        SEND, data=json.dumps(payload or body()), content_type="application/json", **headers, **extra
    )


def error_code(response) -> str:
    return response.json()["error"]["code"]


def test_missing_key_is_401(api):
    response = post(None)
    assert response.status_code == 401 and error_code(response) == "missing_api_key"
    assert response["WWW-Authenticate"].startswith("ApiKey")


@pytest.mark.parametrize("raw", ["garbage", "bk_live_nope_nope", "bk_live_", "x" * 5000])
def test_unknown_key_is_401(api, raw):
    response = post(raw)
    assert response.status_code == 401 and error_code(response) == "invalid_api_key"


def test_tampered_secret_is_401(api):
    response = post(api.raw_key[:-2] + ("AA" if not api.raw_key.endswith("AA") else "BB"))
    assert response.status_code == 401 and error_code(response) == "invalid_api_key"


def test_revoked_key_is_401_with_its_own_code(api):
    api.key.revoke()
    response = post(api.raw_key)
    assert response.status_code == 401 and error_code(response) == "api_key_inactive"


def test_expired_key_is_401_with_its_own_code(api):
    raw = api.new_key(expires_at=timezone.now() - timedelta(seconds=1))
    response = post(raw)
    assert response.status_code == 401 and error_code(response) == "api_key_expired"


def test_ip_outside_the_allow_list_is_403(api):
    raw = api.new_key(allowed_ips=["10.0.0.0/8", "192.168.1.7"])
    assert post(raw, REMOTE_ADDR="10.1.2.3").status_code == 202
    response = post(raw, payload=body("a-2"), REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 403 and error_code(response) == "ip_not_allowed"


def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies(api):
    raw = api.new_key(allowed_ips=["10.0.0.1"])
    response = post(raw, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.0.1")
    assert response.status_code == 403


def test_forwarded_for_counts_from_the_trusted_proxy(api, settings):
    settings.TRUSTED_PROXY_HOPS = 1
    raw = api.new_key(allowed_ips=["10.0.0.1"])
    # the client wrote "10.0.0.1" itself; the proxy appended the real peer 203.0.113.9
    assert post(raw, HTTP_X_FORWARDED_FOR="10.0.0.1, 203.0.113.9").status_code == 403
    assert post(raw, HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.1").status_code == 202


def test_template_type_not_allowed_for_the_key_is_403(api):
    raw = api.new_key(allowed_template_types=["overdue"])
    response = post(raw)
    assert response.status_code == 403 and error_code(response) == "template_type_not_allowed"


def test_key_in_query_string_is_refused(api):
    response = APIClient().post(
        SEND + f"?api_key={api.raw_key}", data=json.dumps(body()), content_type="application/json"
    )
    assert response.status_code == 400 and error_code(response) == "api_key_in_query_string"


def test_per_key_throttle_answers_429_with_retry_after(api):
    raw = api.new_key(rate_limit_per_minute=2)
    assert post(raw, payload=body("t-1")).status_code == 202
    assert post(raw, payload=body("t-2")).status_code == 202
    response = post(raw, payload=body("t-3"))
    assert response.status_code == 429 and error_code(response) == "rate_limited"
    assert int(response["Retry-After"]) >= 1
    assert post(api.raw_key, payload=body("t-4")).status_code == 202  # other keys are not affected


def test_per_ip_throttle_counts_failed_authentication(api, settings):
    import uuid

    from apps.common.redis_client import get_redis

    settings.BILLING_IP_RATE_LIMIT_PER_MINUTE = 3
    ip = f"198.51.100.{uuid.uuid4().int % 200 + 1}"
    get_redis().delete(f"ratelimit:billing-ip:{ip}")  # a previous run's budget lives for a minute
    for _ in range(3):
        assert post("wrong-key", REMOTE_ADDR=ip).status_code == 401
    response = post(api.raw_key, REMOTE_ADDR=ip)  # even a good key is slowed now
    assert response.status_code == 429 and "Retry-After" in response
    other = "203.0.113." + ip.rsplit(".", 1)[1]
    get_redis().delete(f"ratelimit:billing-ip:{other}")
    assert post(api.raw_key, REMOTE_ADDR=other).status_code == 202


def test_last_used_at_is_recorded(api):
    post(api.raw_key)
    api.key.refresh_from_db()
    assert api.key.last_used_at is not None


@pytest.mark.parametrize("route", ["status", "contacts"])
def test_another_tenant_gets_404_for_reads(api, other_api, route):
    queue_id = api.send("notification", body()).json()["queue_id"]
    response = other_api.get(f"/api/v1/billing/queue/{queue_id}/{route}")
    assert response.status_code == 404 and error_code(response) == "not_found"
    assert api.get(f"/api/v1/billing/queue/{queue_id}/{route}").status_code == 200


def test_another_tenant_gets_404_for_control_and_nothing_changes(api, other_api):
    queue_id = api.send("notification", body()).json()["queue_id"]
    response = other_api.post(f"/api/v1/billing/queue/{queue_id}/control", {"action": "cancel"})
    assert response.status_code == 404
    assert BillingContact.objects.filter(queue_id=queue_id, status="pending").count() == 1


def test_another_tenant_cannot_use_my_template_or_instance(api, other_api):
    response = other_api.send("notification", {**body(), "instance": api.instance.name})
    assert response.status_code == 422 and error_code(response) == "unknown_instance"


def test_too_many_contacts_is_413_with_the_limit(api):
    api.config.max_contacts_per_request = 5
    api.config.save()
    response = api.send("notification", body(n=6))
    assert response.status_code == 413 and error_code(response) == "too_many_contacts"
    assert response.json()["error"]["details"]["max_contacts"] == 5


def test_oversized_body_is_413_before_parsing(api, settings):
    settings.API_MAX_BODY_BYTES = 1000
    response = api.send("notification", body(n=50))
    assert response.status_code == 413 and error_code(response) == "payload_too_large"


def test_key_is_never_echoed_in_errors(api):
    response = post(api.raw_key, payload={"external_id": "e", "contacts": "nope", "tenant": "x"})
    assert api.raw_key not in response.content.decode()
