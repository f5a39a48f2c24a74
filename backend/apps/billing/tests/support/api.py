"""API tenants built through the same setup service ops use, keys issued by the model's own
`issue`, requests through DRF's test client with the real middleware stack (the `api` and
`other_api` fixtures of the root conftest are two of them)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from rest_framework.test import APIClient

from apps.billing.models import BillingAPIKey
from apps.billing.services.tenant_setup import ALWAYS_OPEN, setup_tenant
from apps.connections.services import skip_warm_up

from .builders import CREDITOR


@dataclass
class ApiTenant:
    tenant: Any
    instance: Any
    config: Any
    key: BillingAPIKey
    raw_key: str
    client: APIClient

    def post(self, path: str, body: Any, **extra: Any):
        return self.client.post(
            path, data=json.dumps(body), content_type="application/json", HTTP_X_BILLING_API_KEY=self.raw_key, **extra
        )

    def get(self, path: str, **params: Any):
        return self.client.get(path, params, HTTP_X_BILLING_API_KEY=self.raw_key)

    def send(self, template_type: str, body: dict[str, Any], **extra: Any):
        return self.post(f"/api/v1/billing/send/{template_type}", body, **extra)

    def new_key(self, **options: Any) -> str:
        _, raw = BillingAPIKey.issue(tenant=self.tenant, name="extra", **options)
        return raw


def make_tenant(slug: str) -> ApiTenant:
    """A tenant ready to send, whose number has history (no warm-up cap: number-health tests
    make fresh numbers themselves)."""
    result = setup_tenant(
        name=f"Clinic {slug}",
        slug=slug,
        evolution_url="http://127.0.0.1:9",
        evolution_api_key="sandbox-key",
        instance_name=f"{slug}-main",
        business_hours=ALWAYS_OPEN,
        **CREDITOR,
    )
    skip_warm_up(instance=result.instance, user=None, reason="a number with history (test tenant)")
    return ApiTenant(result.tenant, result.instance, result.config, result.api_key, result.raw_api_key, APIClient())


def past(days: int = 5) -> str:
    return (date.today() - timedelta(days=days)).isoformat()


def future(days: int = 5) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


def contacts(n: int, start: int = 0, **fields: Any) -> list[dict[str, Any]]:
    """`n` distinct valid São Paulo mobiles."""
    fields.setdefault("variables", {"message": "A clínica fechará no feriado."})
    return [
        {"phone": f"+55 11 9{7000_0000 + start + i:08d}", "name": f"Cliente {start + i}", **fields} for i in range(n)
    ]
