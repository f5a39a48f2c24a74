"""The bearer token of Evolution's webhooks, checked with PyJWT: what the HTTP tests of
test_webhook_auth.py do not reach (lifetime, required claims, the provider's clock skew)."""

from __future__ import annotations

import time

import jwt
import pytest
import time_machine

from apps.billing.services.webhook_auth import WebhookAuthError, verify_jwt

KEY = "instance-jwt-key-0123456789abcdef"


def token(**claims) -> str:
    now = int(time.time())
    payload = {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook", **claims}
    return jwt.encode({name: value for name, value in payload.items() if value is not None}, KEY, algorithm="HS256")


def test_a_token_as_evolution_makes_it_is_accepted():
    assert verify_jwt(token(), KEY)["action"] == "webhook"


@pytest.mark.parametrize(
    "claims,reason",
    [
        ({"exp": None}, "rejected"),  # exp is required
        ({"iat": int(time.time()), "exp": int(time.time()) + 7200}, "longer than an hour"),
        ({"app": "other"}, "not for webhooks"),
    ],
    ids=["no-exp", "too-long", "other-app"],
)
def test_a_token_outside_the_rules_is_refused(claims, reason):
    with pytest.raises(WebhookAuthError, match=reason):
        verify_jwt(token(**claims), KEY)


def test_the_provider_clock_may_be_a_minute_off_but_not_more():
    issued = token()
    with time_machine.travel(time.time() + 600 + 50, tick=False):
        assert verify_jwt(issued, KEY)
    with time_machine.travel(time.time() + 600 + 90, tick=False), pytest.raises(WebhookAuthError, match="expired"):
        verify_jwt(issued, KEY)
