"""`manage.py billing_classify_replies`: one JSON object per stdin line, nothing else."""

from __future__ import annotations

import io
import json
import sys

from django.core.management import call_command


def test_one_json_object_per_line_in_order(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Já paguei\nme manda o pix\n\nnão sou eu\r\n"))
    out = io.StringIO()
    call_command("billing_classify_replies", stdout=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(row["text"], row["intent"]) for row in rows] == [
        ("Já paguei", "claims_paid"),
        ("me manda o pix", "payment_info"),
        ("", "other"),
        ("não sou eu", "wrong_person"),
    ]
    assert all(set(row) == {"text", "intent", "confidence"} and 0 <= row["confidence"] <= 1 for row in rows)


def test_explain_names_the_rules(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Já paguei, segue o comprovante\n"))
    out = io.StringIO()
    call_command("billing_classify_replies", "--explain", stdout=out)
    assert sorted(json.loads(out.getvalue())["rules"]) == ["paid_verb", "receipt"]


def test_the_openapi_schema_documents_the_conversation_endpoints(client, db):
    paths = client.get("/api/v1/billing/schema/?format=json").json()["paths"]
    assert {
        "/api/v1/billing/conversations",
        "/api/v1/billing/conversations/{conversation_id}",
        "/api/v1/billing/conversations/{conversation_id}/messages",
        "/api/v1/billing/conversations/{conversation_id}/resolve",
    } <= set(paths)
    reply = paths["/api/v1/billing/conversations/{conversation_id}/messages"]["post"]
    assert {"202", "400", "404", "409", "422"} <= set(reply["responses"])
