"""No PII or secret reaches the logs, end to end: a send request through the API (Django's test
client, the real middleware stack), then the worker in process against the Evolution sandbox,
with every log record of every logger captured at DEBUG through the production JSON formatter.

The output is scanned for every phone (as sent, E.164, digits only, national), every name, the
message texts, the API key (and its secret part), the instance's provider key and the sandbox's
global key. A second capture runs the formatter with its safety net off, to prove the code
itself logs none of them: the net is for the day someone forgets, not a licence to forget.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from apps.billing.constants import API_KEY_PREFIX, QueueStatus
from apps.billing.dispatch.engine import run_queue_here
from apps.billing.models import BillingContact
from apps.billing.tests.support.processes import PipelineTenant
from apps.common.logging import JsonFormatter
from apps.common.request_id import bind_request_id
from apps.contacts.utils import normalize_phone

pytestmark = pytest.mark.slow

REQUEST_ID = "pii-scan-req-1"
MESSAGE = "Sua consulta com a Dra Helena está confirmada para amanhã às 14h"
CONTACTS = [
    {
        "phone": "(11) 99876-5432",
        "name": "Maria Aparecida Souza",
        "external_id": "p1",
        "variables": {"message": MESSAGE},
    },
    {
        "phone": "+55 21 98765-4321",
        "name": "João Pereira Lima",
        "external_id": "p2",
        "variables": {"message": MESSAGE + " (sala 3)"},
    },
    {"phone": "11 97654-3210", "name": "Ana Beatriz Costa", "external_id": "p3", "variables": {"message": MESSAGE}},
    # A landline: refused at ingest (not_mobile); its number must not be logged either.
    {"phone": "(21) 3333-4444", "name": "Carlos Eduardo Ramos", "external_id": "p4", "variables": {"message": MESSAGE}},
]


class Capture(logging.Handler):
    def __init__(self, formatter: JsonFormatter) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured_logs() -> Iterator[tuple[Capture, Capture]]:
    root = logging.getLogger()
    shipped, raw = Capture(JsonFormatter()), Capture(JsonFormatter(redact=False))
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(shipped)
    root.addHandler(raw)
    try:
        yield shipped, raw
    finally:
        root.removeHandler(shipped)
        root.removeHandler(raw)
        root.setLevel(old_level)


def forbidden_strings(tenant: PipelineTenant, sandbox_api_key: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for contact in CONTACTS:
        raw = contact["phone"]
        digits = "".join(ch for ch in raw if ch.isdigit())
        found[f"raw phone {raw}"] = raw
        found[f"raw digits {raw}"] = digits
        try:
            e164 = normalize_phone(raw)
        except Exception:
            e164 = "+55" + digits
        found[f"E.164 {raw}"] = e164
        found[f"E.164 digits {raw}"] = e164.lstrip("+")
        found[f"national {raw}"] = e164[3:]
        found[f"name {contact['name']}"] = contact["name"]
        for part in contact["name"].split():
            if len(part) > 4:
                found[f"name part {part}"] = part
    found["message text"] = MESSAGE
    found["message text fragment"] = "Dra Helena"
    found["API key"] = tenant.raw_key
    # The secret is what follows the public id; it may itself contain "_" (token_urlsafe), so
    # splitting on the last "_" could leave a one-letter "secret" that every log line contains.
    found["API key secret"] = tenant.raw_key[len(API_KEY_PREFIX) :].partition("_")[2]
    found["instance api key"] = tenant.instance.api_key
    found["sandbox global key"] = sandbox_api_key
    return found


def leaks(lines: list[str], forbidden: dict[str, str]) -> list[str]:
    text = "\n".join(lines)
    return [f"{label}: {value!r}" for label, value in forbidden.items() if value and value in text]


def test_the_whole_flow_logs_no_phone_name_text_or_key(pipeline_tenant, evolution_sandbox, captured_logs):
    shipped, raw = captured_logs
    tenant = pipeline_tenant()
    # One number the provider says is not on WhatsApp: the failure path logs too.
    evolution_sandbox.set_not_on_whatsapp(normalize_phone(CONTACTS[1]["phone"]).lstrip("+"))

    response = tenant.client.post(
        "/api/v1/billing/send/notification",
        data=json.dumps({"external_id": "pii-1", "contacts": CONTACTS}),
        content_type="application/json",
        HTTP_X_BILLING_API_KEY=tenant.raw_key,
        HTTP_X_REQUEST_ID=REQUEST_ID,
    )
    assert response.status_code == 202, response.content[:500]
    assert response["X-Request-ID"] == REQUEST_ID
    body = response.json()
    assert body["accepted"] == 3 and len(body["rejected"]) == 1

    # What the consumer does with the broker message's request_id (BillingMessage.request_id).
    with bind_request_id(REQUEST_ID):
        result = run_queue_here(body["queue_id"], holder="t")
    assert result.outcome == QueueStatus.COMPLETED, result
    statuses = sorted(BillingContact.objects.filter(queue_id=body["queue_id"]).values_list("status", flat=True))
    assert statuses == ["failed", "sent", "sent"]
    assert len(tenant.messages()) == 2

    forbidden = forbidden_strings(tenant, evolution_sandbox.api_key)
    assert shipped.lines, "nothing was logged: the capture is broken"
    assert leaks(shipped.lines, forbidden) == []
    assert leaks(raw.lines, forbidden) == [], "the code logs PII/secrets; only the formatter's safety net hid it"

    parsed = [json.loads(line) for line in shipped.lines]
    worker_lines = [line for line in parsed if line["logger"].startswith("apps.billing.dispatch")]
    assert worker_lines and all(line.get("request_id") == REQUEST_ID for line in worker_lines)
    ingest = [line for line in parsed if line["message"] == "billing ingest accepted"]
    assert ingest and ingest[0]["request_id"] == REQUEST_ID
    for line in parsed:
        assert {"timestamp", "level", "logger", "message"} <= set(line)
