"""Number-health fixtures: pipeline tenants (a fresh number unless said otherwise), its tenant's
health settings; they run queues with the dispatch tests' in-process runner (`support/dispatch.py`)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.connections.models import NumberHealthSettings


def health_settings(tenant, **fields: Any) -> NumberHealthSettings:
    """The tenant's number-health settings, saved through the model's own validation."""
    settings = NumberHealthSettings.for_tenant(tenant.pk)
    for name, value in fields.items():
        setattr(settings, name, value)
    settings.full_clean()
    settings.save()
    return settings


@pytest.fixture
def fresh_tenant(pipeline_tenant):
    """A tenant whose number is brand new here (day 0 of its warm-up), sending fast."""
    tenant = pipeline_tenant(warmed_up=False)
    tenant.configure(messages_per_minute=60000)
    return tenant
