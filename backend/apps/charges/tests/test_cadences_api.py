"""GET/POST /cadences, PUT/DELETE /cadences/{name}: steps, templates by type, the default."""

from __future__ import annotations

import pytest

from apps.billing.tests.support.builders import build_template
from apps.charges.models import Cadence, ChargeSettings

from .conftest import charge, make_cadence, upsert

pytestmark = pytest.mark.django_db


def test_create_list_and_read_a_cadence_with_the_default_flag(api):
    body = make_cadence(api, offsets=(5, -3, 0))
    assert body["name"] == "Padrão" and body["default"] is True
    assert [(s["offset_days"], s["template_type"], s["template"]) for s in body["steps"]] == [
        (-3, "upcoming", None),
        (0, "upcoming", None),
        (5, "overdue", None),
    ]
    make_cadence(api, name="Curta", offsets=(1,), default=True)
    listed = {c["name"]: c["default"] for c in api.get("/api/v1/billing/cadences").json()}
    assert listed == {"Curta": True, "Padrão": False}
    assert api.get("/api/v1/billing/cadences/Curta").json()["steps"][0]["offset_days"] == 1


def test_a_step_template_must_match_its_offset_type(api):
    reminder = build_template(api.tenant, template_type="upcoming", name="Lembrete")
    ok = api.post(
        "/api/v1/billing/cadences",
        {"name": "A", "steps": [{"offset_days": -1, "template": "Lembrete", "send_from": "09:30"}]},
    )
    assert ok.status_code == 201 and ok.json()["steps"][0] == {
        "offset_days": -1,
        "template_type": "upcoming",
        "template": "Lembrete",
        "send_from": "09:30",
    }
    bad = api.post(
        "/api/v1/billing/cadences", {"name": "B", "steps": [{"offset_days": 2, "template": str(reminder.pk)}]}
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "template_type_mismatch"
    unknown = api.post("/api/v1/billing/cadences", {"name": "C", "steps": [{"offset_days": 2, "template": "x"}]})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_template"
    assert set(Cadence.objects.values_list("name", flat=True)) == {"A"}


@pytest.mark.parametrize(
    "steps, code",
    [
        ([], "validation_error"),
        ([{"offset_days": 1}, {"offset_days": 1}], "duplicate_offset"),
        ([{"offset_days": 400}], "validation_error"),
        ([{"offset_days": 1, "color": 1}], "unknown_field"),
    ],
)
def test_bad_steps_are_400(api, steps, code):
    response = api.post("/api/v1/billing/cadences", {"name": "X", "steps": steps})
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert not Cadence.objects.exists()


def test_the_same_name_twice_is_409(api):
    make_cadence(api)
    response = api.post("/api/v1/billing/cadences", {"name": "Padrão", "steps": [{"offset_days": 1}]})
    assert response.status_code == 409 and response.json()["error"]["code"] == "cadence_exists"


def test_put_replaces_steps_renames_and_drops_the_default(api):
    make_cadence(api)
    response = api.client.put(
        "/api/v1/billing/cadences/Padrão",
        data={"name": "Nova", "default": False, "steps": [{"offset_days": 2}]},
        format="json",
        HTTP_X_BILLING_API_KEY=api.raw_key,
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Nova" and response.json()["default"] is False
    assert [s["offset_days"] for s in response.json()["steps"]] == [2]
    assert ChargeSettings.for_tenant(api.tenant).default_cadence_id is None


def test_delete_is_refused_while_open_charges_follow_the_cadence(api):
    make_cadence(api)
    upsert(api, [charge(1)])
    delete = lambda: api.client.delete("/api/v1/billing/cadences/Padrão", HTTP_X_BILLING_API_KEY=api.raw_key)  # noqa: E731 - a one-line request, named where it is used twice
    refused = delete()
    assert refused.status_code == 409 and refused.json()["error"]["details"] == {"open_charges": 1, "default": True}
    api.post("/api/v1/billing/charges/INV-1/cancel", {})
    assert delete().status_code == 204 and not Cadence.objects.exists()


def test_tenant_b_gets_404_for_tenant_a_cadence(api, other_api):
    make_cadence(api)
    assert other_api.get("/api/v1/billing/cadences/Padrão").status_code == 404
    put = other_api.client.put(
        "/api/v1/billing/cadences/Padrão",
        data={"steps": [{"offset_days": 1}]},
        format="json",
        HTTP_X_BILLING_API_KEY=other_api.raw_key,
    )
    assert put.status_code == 404
    delete = other_api.client.delete("/api/v1/billing/cadences/Padrão", HTTP_X_BILLING_API_KEY=other_api.raw_key)
    assert delete.status_code == 404 and other_api.get("/api/v1/billing/cadences").json() == []
    upsert(other_api, [charge(1, cadence="Padrão")])
    assert Cadence.objects.filter(tenant=api.tenant).count() == 1
