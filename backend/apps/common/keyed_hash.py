"""Keyed hashes (HMAC-SHA256) of values we must recognise but must not keep in clear.

Two uses: a phone erased at its owner's request survives only as `keyed_hash(phone,
purpose="phone")` on the suppression list, so a later send to it is still refused; and a
webhook secret, stored encrypted, is looked up by `keyed_hash(secret, purpose="webhook-secret")`.
A plain hash would not do for phones: Brazil has ~10^9 mobile numbers, hashed in minutes. With
the key (`PERSONAL_DATA_HASH_KEY`, never in the database) the hash reveals nothing.

The key must never change once erasures exist: an erased phone cannot be hashed again (it is
gone), so its opt-out would stop matching. `purpose` separates the uses (domain separation).
"""

from __future__ import annotations

import functools
import hmac

from django.conf import settings


@functools.cache
def _key(configured: str, secret_key: str) -> bytes:
    if configured:
        return configured.encode()
    # Local runs and tests: derived from SECRET_KEY (the deploy check asks for a real key).
    return hmac.digest(secret_key.encode(), b"personal-data-hash-key", "sha256")


def keyed_hash(value: str, *, purpose: str) -> str:
    """64 hex characters; the same value and purpose always give the same hash."""
    key = _key(settings.PERSONAL_DATA_HASH_KEY, settings.SECRET_KEY)
    return hmac.digest(key, f"{purpose}\x00{value}".encode(), "sha256").hex()


def phone_hash(phone: str) -> str:
    """Of an E.164 phone (`apps.contacts.utils.normalize_phone` first: one writing, one hash)."""
    return keyed_hash(phone, purpose="phone")
