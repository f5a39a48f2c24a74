"""Charges test helpers: charges and cadences made through the real API by the root conftest's
`api` tenants (the set-up service ops use, DRF's test client, the real middleware)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from apps.billing.tests.support.api import ApiTenant


def charge(n: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid charge (distinct phone per `n`), due in five days unless told."""
    body = {
        "external_id": f"INV-{n}",
        "phone": f"+55 11 9{8000_0000 + n:08d}",
        "name": f"Devedor {n}",
        "amount": "150.00",
        "due_date": (date.today() + timedelta(days=5)).isoformat(),
    }
    body.update(fields)
    return body


def upsert(api: ApiTenant, charges: list[dict[str, Any]], **body: Any):
    return api.post("/api/v1/billing/charges", {"charges": charges, **body})


def make_cadence(api: ApiTenant, name: str = "Padrão", offsets=(-3, 0, 1), default: bool = True, **body: Any):
    response = api.post(
        "/api/v1/billing/cadences",
        {"name": name, "default": default, "steps": [{"offset_days": o} for o in offsets], **body},
    )
    assert response.status_code == 201, response.content
    return response.json()
