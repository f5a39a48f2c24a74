"""Billing fixtures: a tenant pair, a template and a queue, admin clients, and the webhook poster
for a tenant and its neighbour; the data comes from the plain builders in `support/`."""

from __future__ import annotations

import itertools

import pytest
from django.test import Client

from apps.billing.models import BillingQueue, BillingTemplate
from apps.tenancy.models import Tenant

from .support.api import make_tenant
from .support.builders import build_queue, build_staff, build_template, build_tenant
from .support.webhooks import Hook

_hook_ids = itertools.count(1)


@pytest.fixture
def tenant(db) -> Tenant:
    return build_tenant("acme")


@pytest.fixture
def other_tenant(db) -> Tenant:
    return build_tenant("globex")


@pytest.fixture
def template(tenant) -> BillingTemplate:
    return build_template(tenant, variations=2)


@pytest.fixture
def queue(tenant, template) -> BillingQueue:
    return build_queue(tenant, template=template, total=3)


@pytest.fixture
def staff_client(client, tenant):
    """Logged in as staff of `tenant` (acme)."""
    client.force_login(build_staff(tenant))
    return client


@pytest.fixture
def hook(db) -> Hook:
    """A tenant ready to send, and a poster to its webhook URL."""
    return Hook(make_tenant(f"hook{next(_hook_ids)}"), Client())


@pytest.fixture
def other_hook(db) -> Hook:
    """Tenant B: sees nothing of `hook`'s tenant."""
    return Hook(make_tenant(f"other{next(_hook_ids)}"), Client())
