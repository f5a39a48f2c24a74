"""Fixtures for the observability tests: tenants with keys (the API tests' builder), queues, and
an isolated progress throttle."""

from __future__ import annotations

from typing import Any

import pytest

from apps.billing.tests.support.api import ApiTenant, make_tenant
from apps.billing.tests.support.builders import build_queue, build_template


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
