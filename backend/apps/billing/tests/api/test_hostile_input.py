"""Garbage at every endpoint: schemathesis against our own OpenAPI schema, plus hand-written
hostile bodies. Whatever arrives, the answer is a 2xx or a 4xx in the one error shape."""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from apps.billing.models import BillingAPIKey, BillingContact
from apps.billing.tests.support.api import make_tenant

pytestmark = pytest.mark.django_db

schema = schemathesis.openapi.from_wsgi("/api/v1/billing/schema/?format=json", WSGIHandler())


@pytest.fixture
def keep_test_transaction():
    """The raw WSGI handler closes the connection after each request (Django's test client
    does not); inside the test transaction that would drop everything."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_key(keep_test_transaction) -> str:
    """One tenant per operation (a tenant per example made this test 4× slower: 26 operations,
    150 s) with a key of its own whose limit the examples cannot reach — at the default 60 a
    minute most examples were answered 429 and never reached the view."""
    api = make_tenant("fuzz")
    _, raw_key = BillingAPIKey.issue(tenant=api.tenant, name="fuzz", rate_limit_per_minute=1_000_000)
    return raw_key


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_input_produces_a_server_error(case, fuzz_key):
    response = case.call(headers={"X-Billing-API-Key": fuzz_key})
    assert response.status_code != 429, "throttled: the example never reached the view"
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "details"}


SEND = "/api/v1/billing/send/overdue"


@pytest.mark.parametrize(
    "raw_body,content_type,status,code",
    [
        ("{not json", "application/json", 400, "malformed_json"),
        ("", "application/json", 400, "validation_error"),
        ("[]", "application/json", 400, "validation_error"),
        ('"a string"', "application/json", 400, "validation_error"),
        ("null", "application/json", 400, "validation_error"),
        ("external_id=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("<xml/>", "text/xml", 415, "unsupported_media_type"),
        ('{"external_id": 1e999999, "contacts": []}', "application/json", 400, None),
        ('{"external_id": "x", "contacts": {"phone": "1"}}', "application/json", 400, "validation_error"),
        ('{"external_id": ["x"], "contacts": []}', "application/json", 400, "validation_error"),
        ('{"external_id": "x", "contacts": [], "tenant": "other"}', "application/json", 400, "forbidden_field"),
        ('{"external_id": "x", "contacts": [], "surprise": 1}', "application/json", 400, "unknown_field"),
        (
            '{"external_id": "x", "contacts": [{"phone": "11999999999", "name": "a", "status": "sent"}]}',
            "application/json",
            400,
            "forbidden_field",
        ),
        (
            '{"external_id": "x", "contacts": [{"phone": "11999999999", "name": "a", "provider_message_id": "z"}]}',
            "application/json",
            400,
            "forbidden_field",
        ),
        ('{"external_id": "\\u0000", "contacts": [{"phone": "1"}]}', "application/json", 400, "invalid_characters"),
        ('{"external_id": "x", "contacts": [1, "two", null, [3]]}', "application/json", 422, "no_valid_contacts"),
        ('{"external_id": "x", "metadata": [1], "contacts": [{"phone": "1"}]}', "application/json", 400, None),
        (
            '{"external_id": "x", "callback_url": "javascript:alert(1)", "contacts": [{"phone": "1"}]}',
            "application/json",
            400,
            None,
        ),
        ('{"external_id": "' + "x" * 201 + '", "contacts": [{"phone": "1"}]}', "application/json", 400, None),
        ('{"external_id": "x", "strict": "maybe", "contacts": [{"phone": "1"}]}', "application/json", 400, None),
        ('{"a":' * 5000 + "1" + "}" * 5000, "application/json", 400, None),
        (
            '{"external_id": "x", "contacts": [{"phone": "11999999999", "name": "a", "variables": {"v": "\\u0000"}}]}',
            "application/json",
            400,
            "invalid_characters",
        ),
        (
            '{"external_id": "x", "metadata": {"k": "a\\u0000b"}, "contacts": [{"phone": "1"}]}',
            "application/json",
            400,
            "invalid_characters",
        ),
        (
            '{"external_id": "x", "template": "\\u0000", "contacts": [{"phone": "1"}]}',
            "application/json",
            400,
            "invalid_characters",
        ),
    ],
)
def test_hostile_bodies_get_a_clear_4xx(api, raw_body, content_type, status, code):
    response = api.client.post(SEND, data=raw_body, content_type=content_type, HTTP_X_BILLING_API_KEY=api.raw_key)
    assert response.status_code == status, response.content[:300]
    error = response.json()["error"]
    if code:
        assert error["code"] == code
    assert BillingContact.objects.count() == 0


@pytest.mark.parametrize(
    "contact,code",
    [
        ({"phone": 11999999999, "name": "a"}, "invalid_phone"),
        ({"phone": None, "name": "a"}, "missing_phone"),
        ({"phone": "11 99999-9999", "name": "a" * 201}, "invalid_name"),
        ({"phone": "11 99999-9999", "name": {"first": "a"}}, "invalid_name"),
        ({"phone": "11 99999-9999", "name": "a", "due_date": 20261110, "amount": 1}, "invalid_due_date"),
        ({"phone": "11 99999-9999", "name": "a", "due_date": "2020-01-01", "amount": True}, "invalid_amount"),
        ({"phone": "11 99999-9999", "name": "a", "due_date": "2020-01-01", "amount": -5}, "invalid_amount"),
        ({"phone": "11 99999-9999", "name": "a", "due_date": "2020-01-01", "amount": "NaN"}, "invalid_amount"),
        ({"phone": "11 99999-9999", "name": "a", "due_date": "2020-01-01", "amount": 1.234}, "invalid_amount"),
        (
            {"phone": "11 99999-9999", "name": "a", "due_date": "2020-01-01", "amount": 1, "variables": [1]},
            "invalid_variables",
        ),
        (
            {
                "phone": "11 99999-9999",
                "name": "a",
                "due_date": "2020-01-01",
                "amount": 1,
                "variables": {"a": {"b": {"c": {"d": 1}}}},
            },
            "invalid_variables",
        ),
        (
            {"phone": "11 99999-9999", "name": "a", "due_date": "2020-01-01", "amount": 1, "variables": {"bad key": 1}},
            "invalid_variables",
        ),
        (
            {
                "phone": "11 99999-9999",
                "name": "a",
                "due_date": "2020-01-01",
                "amount": 1,
                "variables": {"big": "x" * 5000},
            },
            "invalid_variables",
        ),
        ({"phone": "<script>", "name": "a"}, "invalid_phone"),
    ],
)
def test_hostile_contacts_are_refused_one_by_one(api, contact, code):
    good = {"phone": "11 98888-7777", "name": "ok", "due_date": "2020-01-01", "amount": 1}
    response = api.send("overdue", {"external_id": "h", "contacts": [good, contact]})
    assert response.status_code == 202, response.content[:300]
    rejected = response.json()["rejected"]
    assert [(r["index"], r["code"]) for r in rejected] == [(1, code)]


def test_wrong_method_is_405_json(api):
    response = api.get(SEND)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_unknown_api_route_is_404_json(api):
    response = api.get("/api/v1/billing/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_schema_documents_every_endpoint_with_examples(api):
    spec = json.loads(api.client.get("/api/v1/billing/schema/?format=json").content)
    paths = spec["paths"]
    for path in (
        "send/overdue",
        "send/upcoming",
        "send/notification",
        "queue/{queue_id}/status",
        "queue/{queue_id}/control",
        "queue/{queue_id}/contacts",
    ):
        operations = paths[f"/api/v1/billing/{path}"]
        for operation in operations.values():
            text = json.dumps(operation)
            assert '"examples"' in text, path
    assert spec["components"]["securitySchemes"]["BillingAPIKey"]["name"] == "X-Billing-API-Key"
    assert api.client.get("/api/v1/billing/docs/").status_code == 200
    assert api.client.get("/api/v1/billing/redoc/").status_code == 200
