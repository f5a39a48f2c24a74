"""Deploy checks (`manage.py check --deploy`) for the keys that protect data at rest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def data_protection_keys(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[Warning]:
    warnings = []
    if not settings.FIELD_ENCRYPTION_KEYS:
        warnings.append(
            Warning(
                "FIELD_ENCRYPTION_KEYS is not set: stored secrets are encrypted with a key derived from SECRET_KEY.",
                hint="Set FIELD_ENCRYPTION_KEYS to a Fernet key (docs/security.md, 'Secrets at rest').",
                id="common.W001",
            )
        )
    if not settings.PERSONAL_DATA_HASH_KEY:
        warnings.append(
            Warning(
                "PERSONAL_DATA_HASH_KEY is not set: erased phones' opt-outs are keyed by SECRET_KEY and stop "
                "matching if it is rotated.",
                hint="Set PERSONAL_DATA_HASH_KEY once to a long random value and never change it (docs/security.md).",
                id="common.W002",
            )
        )
    return warnings
