"""Request ids travel from the HTTP request into every log line; the JSON formatter's safety net
masks what must never be logged."""

from __future__ import annotations

import json
import logging

import pytest

from apps.common.logging import JsonFormatter
from apps.common.request_id import bind_request_id, clean_request_id, get_request_id


def _record(message: str = "hello", *args, exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("apps.test", logging.INFO, __file__, 1, message, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _format(record: logging.LogRecord, **options) -> dict:
    return json.loads(JsonFormatter(**options).format(record))


class TestRequestIdContext:
    def test_it_binds_and_restores(self):
        assert get_request_id() is None
        with bind_request_id("abc-123"):
            assert get_request_id() == "abc-123"
            with bind_request_id("inner"):
                assert get_request_id() == "inner"
            assert get_request_id() == "abc-123"
        assert get_request_id() is None

    @pytest.mark.parametrize("raw", ["", " ", "a" * 65, "bad\nline", 'x"y', "+55 11 99876-5432", None, 42])
    def test_it_refuses_values_that_could_forge_or_carry_data(self, raw):
        assert clean_request_id(raw) is None

    def test_a_worker_binding_none_gets_no_stale_id(self):
        with bind_request_id("outer"), bind_request_id(None):
            assert get_request_id() is None


class TestJsonFormatter:
    def test_every_line_has_the_base_fields_extra_and_the_bound_request_id(self):
        with bind_request_id("req-1"):
            line = _format(_record("queue %s done", "q1", queue_id="q1", sent=3))
        assert line["level"] == "INFO" and line["logger"] == "apps.test" and line["message"] == "queue q1 done"
        assert line["timestamp"].endswith("+00:00")
        assert line["request_id"] == "req-1" and line["queue_id"] == "q1" and line["sent"] == 3

    def test_an_explicit_request_id_in_extra_wins(self):
        with bind_request_id("bound"):
            assert _format(_record(request_id="explicit"))["request_id"] == "explicit"

    @pytest.mark.parametrize(
        "leak",
        [
            "+5511998765432",
            "+55 11 99876-5432",
            "(11) 99876-5432",
            "11 99876-5432",
            "5511998765432",
            "11998765432",
        ],
    )
    def test_phones_in_messages_and_extra_are_masked(self, leak):
        formatter = JsonFormatter()
        line = json.loads(formatter.format(_record(f"sending to {leak}", detail={"to": [leak]})))
        output = json.dumps(line)
        assert "8765432" not in output and "99876" not in output
        assert "5432" in line["message"]  # masked like mask_phone: the last four digits stay
        assert formatter.redactions >= 2

    def test_api_keys_cpfs_and_secret_fields_are_redacted(self):
        raw_key = "bk_live_0123456789abcdef_SeCrEtSeCrEtSeCrEt-_x"
        line = _format(
            _record(
                f"key {raw_key}",
                apikey="provider-key",
                api_key=raw_key,
                authorization="Bearer t",
                text="Olá Maria, sua fatura",
                variables={"nome": "Maria"},
                note="cpf 123.456.789-09",
            )
        )
        output = json.dumps(line)
        for secret in ("SeCrEt", "provider-key", "Bearer t", "Olá Maria", "123.456.789-09"):
            assert secret not in output
        assert line["apikey"] == "[redacted]" and line["text"] == "[redacted]" and line["variables"] == "[redacted]"
        assert "bk_live_[redacted]" in line["message"]

    def test_tracebacks_are_scanned_too(self):
        try:
            raise ValueError("provider refused +5511998765432")
        except ValueError:
            import sys

            line = _format(_record("failed", exc_info=sys.exc_info()))
        assert "998765432" not in line["exc_info"] and "ValueError" in line["exc_info"]

    def test_ordinary_ids_and_numbers_are_left_alone(self):
        values = {
            "queue_id": "6f1c0d2e-1234-4a5b-9c8d-123456789012",
            "contact_id": 12345678901,
            "provider_message_id": "3EB0C767D26A1D4F2A4B",
            "duration_ms": 1234,
            "published_at": "2025-01-02T10:11:12.123456+00:00",
            "phone": "+55 11 9****-4321",
        }
        formatter = JsonFormatter()
        line = json.loads(formatter.format(_record("ok", **values)))
        assert {key: line[key] for key in values} == values
        assert formatter.redactions == 0

    def test_redaction_can_be_switched_off_for_tests_that_prove_the_code_itself_is_clean(self):
        line = _format(_record("to +5511998765432"), redact=False)
        assert line["message"] == "to +5511998765432"


class TestRequestIdMiddleware:
    def test_it_makes_an_id_and_answers_with_it(self, client):
        response = client.get("/healthz")
        assert len(response["X-Request-ID"]) == 32

    def test_it_keeps_a_clean_caller_id_and_replaces_a_dirty_one(self, client):
        assert client.get("/healthz", HTTP_X_REQUEST_ID="erp-42.a")["X-Request-ID"] == "erp-42.a"
        replaced = client.get("/healthz", HTTP_X_REQUEST_ID='x" injected')["X-Request-ID"]
        assert replaced != 'x" injected' and len(replaced) == 32

    def test_log_lines_written_during_the_request_carry_it(self, client, db):
        records: list[str] = []

        class Capture(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(self.format(record))

        handler = Capture()
        handler.setFormatter(JsonFormatter())
        logger = logging.getLogger("apps.billing.authentication")
        logger.addHandler(handler)
        old_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            response = client.get(
                "/api/v1/billing/queue/x/status", HTTP_X_BILLING_API_KEY="bk_live_nope", HTTP_X_REQUEST_ID="trace-me"
            )
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
        assert response.status_code == 401 and response["X-Request-ID"] == "trace-me"
        assert records and all(json.loads(line)["request_id"] == "trace-me" for line in records)
