"""The stdlib HS256 JWT used for the `jwt_key` webhook header."""

from __future__ import annotations

import pytest

from apps.common import hs256

# The RFC 7519-style example published on jwt.io (HS256, secret "your-256-bit-secret").
KNOWN_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


def test_it_produces_the_well_known_token():
    payload = {"sub": "1234567890", "name": "John Doe", "iat": 1516239022}

    assert hs256.encode(payload, "your-256-bit-secret") == KNOWN_TOKEN
    assert hs256.decode(KNOWN_TOKEN, "your-256-bit-secret") == payload


def test_a_tampered_or_wrongly_keyed_token_is_rejected():
    header, payload, signature = KNOWN_TOKEN.split(".")
    with pytest.raises(hs256.InvalidToken):
        hs256.decode(KNOWN_TOKEN, "another-secret")
    with pytest.raises(hs256.InvalidToken):
        hs256.decode(f"{header}.{payload}x.{signature}", "your-256-bit-secret")
    with pytest.raises(hs256.InvalidToken):
        hs256.decode("not-a-token", "your-256-bit-secret")


def test_the_webhook_token_expires_after_ten_minutes():
    token = hs256.webhook_token("key", now=1_000_000)

    assert hs256.decode(token, "key", verify_exp=False) == {
        "iat": 1_000_000,
        "exp": 1_000_600,
        "app": "evolution",
        "action": "webhook",
    }
    with pytest.raises(hs256.InvalidToken, match="expired"):
        hs256.decode(token, "key")
