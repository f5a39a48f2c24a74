"""Who may call the provider webhook, and what a refused call leaves behind (nothing)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

import pytest

from apps.billing.constants import ContactStatus
from apps.billing.models import BillingContact, BillingQueue
from apps.billing.services.webhook_auth import webhook_jwt_key
from apps.billing.tests.support.webhooks import CONNECTION_UPDATE_V2, MESSAGES_UPDATE_V2, MESSAGES_UPSERT_V2, envelope
from apps.chat.models import Conversation, Message
from apps.connections.models import WhatsAppInstance


def jwt(key: str, **claims) -> str:
    """An HS256 token built here, the way Evolution's generateJwtToken() does."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    now = int(time.time())
    payload = {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook", **claims}
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(payload).encode())
    return head + "." + b64(hmac.new(key.encode(), head.encode(), hashlib.sha256).digest())


def snapshot(hook) -> tuple:
    instance = WhatsAppInstance.objects.get(pk=hook.instance.pk)
    return (
        Message.objects.count(),
        Conversation.objects.count(),
        tuple(BillingContact.objects.order_by("pk").values_list("status", "delivered_at", "replied_at")),
        tuple(BillingQueue.objects.order_by("pk").values_list("status", "delivered_count", "replied_count")),
        (instance.health_state, instance.health_checked_at),
    )


@pytest.mark.parametrize("token", ["not-the-secret-but-well-formed-123456", "short", "x" * 101, "bad%20chars!!!!!!!!!"])
def test_an_unknown_or_malformed_secret_gets_401_and_nothing_is_written(hook, token):
    contact = hook.sent_contact()
    before = snapshot(hook)
    for template in (MESSAGES_UPDATE_V2, MESSAGES_UPSERT_V2, CONNECTION_UPDATE_V2):
        body = envelope(
            template, hook.instance, **({"keyId": contact.provider_message_id} if "keyId" in template["data"] else {})
        )
        response = hook.post(body, token=token)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert snapshot(hook) == before


def test_another_instances_secret_does_not_open_this_instance(hook, db):
    from apps.billing.tests.support.api import make_tenant
    from apps.billing.tests.support.webhooks import Hook

    other = Hook(make_tenant("hook-other"), hook.client)
    contact = hook.sent_contact()
    body = envelope(MESSAGES_UPDATE_V2, hook.instance, keyId=contact.provider_message_id)
    before = snapshot(hook)
    response = other.post(body)  # other tenant's URL, body naming our instance
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "instance_mismatch"
    assert snapshot(hook) == before


def test_an_inactive_instance_is_refused(hook):
    WhatsAppInstance.objects.filter(pk=hook.instance.pk).update(is_active=False)
    response = hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance))
    assert response.status_code == 401


def test_a_valid_evolution_bearer_token_is_accepted(hook):
    token = jwt(webhook_jwt_key(hook.instance))
    response = hook.post(
        envelope(CONNECTION_UPDATE_V2, hook.instance, state="open"), HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "make_header",
    [
        lambda key: "Bearer " + jwt("wrong-key"),
        lambda key: "Bearer not.a.jwt",
        lambda key: "Bearer ",
        lambda key: "Basic dXNlcjpwYXNz",
        lambda key: "Bearer " + jwt(key, iat=int(time.time()) - 4000, exp=int(time.time()) - 3400),  # expired
        lambda key: "Bearer " + jwt(key, iat=int(time.time()) + 3600, exp=int(time.time()) + 4200),  # from the future
        lambda key: "Bearer " + jwt(key, action="other"),
    ],
    ids=["wrong-key", "garbage", "empty", "basic", "expired", "future", "other-action"],
)
def test_a_bad_bearer_token_gets_401_even_with_the_right_path(hook, make_header):
    before = snapshot(hook)
    header = make_header(webhook_jwt_key(hook.instance))
    response = hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance), HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert snapshot(hook) == before


def test_the_bearer_key_is_not_the_url_secret(hook):
    """A leaked URL (proxy logs) must not be enough to forge the bearer token."""
    token = jwt(hook.instance.webhook_secret)
    response = hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401


def test_the_bearer_token_can_be_required(hook, settings):
    settings.BILLING_WEBHOOK_REQUIRE_JWT = True
    assert hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance)).status_code == 401
    token = jwt(webhook_jwt_key(hook.instance))
    assert (
        hook.post(envelope(CONNECTION_UPDATE_V2, hook.instance), HTTP_AUTHORIZATION=f"Bearer {token}").status_code
        == 200
    )


def test_bodies_over_the_limit_get_413_and_nothing_is_written(hook, settings):
    settings.BILLING_WEBHOOK_MAX_BODY_BYTES = 2048
    contact = hook.sent_contact()
    body = envelope(MESSAGES_UPDATE_V2, hook.instance, keyId=contact.provider_message_id, padding="x" * 4096)
    before = snapshot(hook)
    response = hook.post(body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert snapshot(hook) == before


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b"[" * 5000 + b"]" * 5000])
def test_a_malformed_body_gets_400(hook, raw):
    response = hook.post(None, raw=raw)
    assert response.status_code in (400, 413)
    assert response.json()["error"]["code"] in ("malformed_json", "invalid_envelope", "payload_too_large")


def test_only_post_is_allowed(hook):
    from apps.billing.tests.support.webhooks import webhook_path

    assert hook.client.get(webhook_path(hook.instance)).status_code == 405


def test_the_provider_apikey_is_never_logged_or_stored(hook, caplog):
    contact = hook.sent_contact()
    secret_key = "INSTANCE-TOKEN-7f3e9a"
    caplog.set_level(logging.DEBUG)
    for template, data in (
        (MESSAGES_UPDATE_V2, {"keyId": contact.provider_message_id}),
        (
            MESSAGES_UPSERT_V2,
            {"key": {"remoteJid": "5511998765432@s.whatsapp.net", "fromMe": False, "id": "3A5F0000000000AA"}},
        ),
    ):
        body = envelope(template, hook.instance, **data)
        body["apikey"] = secret_key
        assert hook.post(body).status_code == 200
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert secret_key not in logged
    assert hook.instance.webhook_secret not in logged
    stored = json.dumps(list(Message.objects.values()), default=str) + json.dumps(
        list(BillingContact.objects.values()), default=str
    )
    assert secret_key not in stored


def test_unknown_events_are_acknowledged_and_ignored(hook):
    body = {"event": "presence.update", "instance": hook.instance.instance_name, "data": {"id": "x"}}
    response = hook.post(body)
    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored"


def test_by_events_urls_work_too(hook):
    from apps.billing.tests.support.webhooks import webhook_path

    contact = hook.sent_contact()
    body = envelope(MESSAGES_UPDATE_V2, hook.instance, keyId=contact.provider_message_id)
    del body["event"]
    response = hook.client.post(
        webhook_path(hook.instance, "messages-update"), data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    contact.refresh_from_db()
    assert contact.status == ContactStatus.DELIVERED
