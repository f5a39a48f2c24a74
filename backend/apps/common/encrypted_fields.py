"""Secrets at rest: a text field stored encrypted with Fernet (AES-128-CBC + HMAC-SHA256).

The keys come from the environment (`FIELD_ENCRYPTION_KEYS`, comma-separated Fernet keys,
newest first), never from the database, so a dump or a backup alone holds no usable provider
key or signing secret. `MultiFernet` encrypts with the first key and decrypts with any, which
is how keys rotate: put the new key first, run `manage.py rotate_field_encryption`
(re-encrypts every row with it), then drop the old key.

The model attribute is the clear value (code that calls the provider reads it as before); only
the column holds ciphertext. A value that does not decrypt raises: a wrong or missing key must
fail loudly, not send a ciphertext to a provider as if it were the key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class DecryptionError(Exception):
    """A stored value no configured key decrypts."""


@functools.cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        # Local runs and tests only (the deploy check asks for FIELD_ENCRYPTION_KEYS).
        derived = base64.urlsafe_b64encode(hashlib.sha256(f"field-encryption:{secret_key}".encode()).digest())
        keys = (derived.decode(),)
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key") from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeEncodeError) as exc:
        raise DecryptionError("a stored secret does not decrypt with FIELD_ENCRYPTION_KEYS") from exc


def rotate(token: str) -> str:
    """The same value encrypted with the newest key (no-op cost for a value already on it)."""
    try:
        return fernet().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise DecryptionError("a stored secret does not decrypt with FIELD_ENCRYPTION_KEYS") from exc


def mask_secret(value: str) -> str:
    """What a person may see of a secret: enough to tell two apart, never enough to use."""
    if not value:
        return ""
    return f"{value[:4]}…{value[-2:]} ({len(value)} characters)" if len(value) > 12 else "••••"


class EncryptedTextField(models.TextField[str, str]):
    """A TextField whose column holds a Fernet token; blank stays blank (nothing to protect).
    Not searchable or orderable by value: look such a value up through a keyed hash beside it
    (`apps.common.keyed_hash`)."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
