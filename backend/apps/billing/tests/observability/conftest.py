"""Fixtures for the observability tests: tenants with keys (the API tests' builder), queues, and
an isolated progress throttle."""

from __future__ import annotations

from typing import Any

import pytest

from apps.billing.tests.api.conftest import ApiTenant, make_tenant
from apps.billing.tests.conftest import build_queue, build_template


@pytest.fixture(autouse=True)
def fresh_progress_throttle():
    from apps.billing.progress import _throttle

    _throttle.clear()
    yield
    _throttle.clear()


@pytest.fixture
def ws_tenant(transactional_db) -> ApiTenant:
    """Committed rows: the WebSocket consumer reads them from its own database thread."""
    return make_tenant("wsalpha")


@pytest.fixture
def ws_other_tenant(transactional_db) -> ApiTenant:
    return make_tenant("wsbeta")


def make_queue(api_tenant: ApiTenant, *, total: int = 10, **fields: Any):
    template = build_template(api_tenant.tenant, template_type="notification")
    return build_queue(api_tenant.tenant, template=template, total=total, instance=api_tenant.instance, **fields)


@pytest.fixture
def pipeline_tenant(transactional_db, make_sandbox_whatsapp_instance, evolution_sandbox):
    """A tenant whose instance is a fresh sandbox instance (the pipeline tests' builder), without
    their broker purge: this directory runs the worker in process and needs no consumer."""
    from apps.billing.tests.pipeline.conftest import PipelineTenant

    def make(messages_per_minute: int = 600, **options: Any) -> PipelineTenant:
        return PipelineTenant(
            make_sandbox_whatsapp_instance(), evolution_sandbox, messages_per_minute=messages_per_minute, **options
        )

    return make
