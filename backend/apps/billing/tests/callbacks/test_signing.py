"""Standard Webhooks signatures: the spec's published example, secrets in both forms."""

from __future__ import annotations

import base64

import pytest

from apps.billing.models import BillingConfig
from apps.billing.services.callbacks import sign, signing_key

from .conftest import InvalidSignature, verify_standard_webhook

# https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_reproduces_the_specs_example_vector():
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert sign(SPEC_SECRET, SPEC_ID, str(SPEC_TIMESTAMP), SPEC_BODY.decode()) == SPEC_SIGNATURE


def test_the_independent_verifier_accepts_the_specs_example_vector():
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE}
    assert verify_standard_webhook(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP) == {"test": 2432232314}


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_any_change_breaks_the_signature(tamper):
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE}
    body, secret = SPEC_BODY, SPEC_SECRET
    if tamper == "body":
        body = b'{"test": 2432232315}'
    elif tamper == "id":
        headers["webhook-id"] = "msg_other"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(SPEC_TIMESTAMP + 1)
    else:
        secret = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()
    with pytest.raises(InvalidSignature):
        verify_standard_webhook(secret, headers, body, now=SPEC_TIMESTAMP)


def test_the_signing_key_is_the_decoded_part_of_a_whsec_secret():
    assert signing_key(SPEC_SECRET) == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


def test_older_secrets_without_the_prefix_sign_with_their_bytes():
    legacy = "Zm9vYmFyLWxlZ2FjeS10b2tlbl91cmxzYWZlLXNlY3JldA"
    assert signing_key(legacy) == legacy.encode()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": sign(legacy, "msg_1", 1700000000, b"{}"),
    }
    assert verify_standard_webhook(legacy, headers, b"{}", now=1700000000) == {}


def test_new_tenants_get_standard_webhooks_secrets(db):
    from apps.billing.tests.support.api import make_tenant

    secret = BillingConfig.for_tenant(make_tenant("secret-form").tenant).callback_secret
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
