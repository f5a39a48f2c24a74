"""JSON-lines log formatter: one object per record, context from `extra` kept as fields.

Every line has `timestamp`, `level`, `logger`, `message`, the `extra` fields the caller gave,
and `request_id` when one is bound (see `apps.common.request_id`).

Callers never put PII in messages or `extra`: phones go through `contacts.utils.mask_phone`,
message bodies and keys are not logged at all. The formatter adds a safety net for the day
someone forgets (docs/security.md, "PII in logs"):

- `extra` fields whose *name* says secret or content (`apikey`, `api_key`, `authorization`,
  `password`, `secret`, `token`, `text`, `body`, `rendered_message`, `variables`, `cpf`, ...)
  are replaced by `[redacted]`;
- in every string (message, `extra` values at any depth, the traceback), API keys
  (`bk_live_...`) lose their secret, CPFs (`123.456.789-09`) are replaced and anything that
  looks like a phone (`+55 11 99876-5432`, `(11) 99876-5432`, a bare run of 10-13 digits) is
  masked like `mask_phone` does.

The net cannot recognise a name or a message text in free prose: not logging them is still
the caller's job, and the PII log test (billing/tests/observability) runs the whole flow to
prove it. `JsonFormatter.redactions` counts what the net caught, so tests can tell "clean"
from "cleaned".
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from apps.common.request_id import get_request_id

# Attributes every LogRecord has; anything else on the record came from `extra`.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

REDACTED = "[redacted]"
SENSITIVE_KEYS = frozenset(
    {
        "apikey",
        "api_key",
        "x_billing_api_key",
        "x-billing-api-key",
        "raw_key",
        "authorization",
        "password",
        "secret",
        "token",
        "signing_secret",
        "webhook_secret",
        "text",
        "body",
        "rendered_message",
        "message_text",
        "content",
        "variables",
        "cpf",
        "document",
    }
)

_API_KEY = re.compile(r"bk_live_[A-Za-z0-9]+_[A-Za-z0-9_\-]+")
_CPF = re.compile(r"(?<!\d)\d{3}\.\d{3}\.\d{3}-\d{2}(?!\d)")
_PHONE = re.compile(
    r"\+\d[\d\s().\-]{8,20}\d"  # international: +55 11 99876-5432, +5511998765432
    r"|\(\d{2}\)\s?\d{4,5}-?\d{4}(?!\d)"  # Brazilian local: (11) 99876-5432
    r"|(?<![\w.\-])\d{2}\s?9\d{4}-\d{4}(?!\d)"  # 11 99876-5432
    r"|(?<![\w.\-])\d{10,13}(?![\w\-])"  # bare digits: 5511998765432, 11998765432
)


def _mask_phone_text(raw: str) -> str:
    from apps.contacts.utils import mask_phone

    return mask_phone(raw)


class Redactor:
    """Applies the safety net to one value; counts what it changed."""

    def __init__(self) -> None:
        self.count = 0

    def text(self, value: str) -> str:
        new = _API_KEY.sub(lambda m: "bk_live_" + REDACTED, value)
        new = _CPF.sub(REDACTED, new)
        new = _PHONE.sub(lambda m: _mask_phone_text(m.group(0)), new)
        if new != value:
            self.count += 1
        return new

    def value(self, value: Any, depth: int = 0) -> Any:
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return self.text(value)
        if depth >= 5:
            return self.text(str(value))
        if isinstance(value, dict):
            return {key: self.field(str(key), item, depth + 1) for key, item in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.value(item, depth + 1) for item in value]
        return self.text(str(value))

    def field(self, key: str, value: Any, depth: int = 0) -> Any:
        if key.lower() in SENSITIVE_KEYS and value not in (None, ""):
            self.count += 1
            return REDACTED
        return self.value(value, depth)


class JsonFormatter(logging.Formatter):
    def __init__(self, *args: Any, redact: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redact = redact
        self.redactions = 0

    def format(self, record: logging.LogRecord) -> str:
        redactor = Redactor() if self.redact else None
        message = record.getMessage()
        payload: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": redactor.text(message) if redactor else message,
        }
        request_id = get_request_id()
        if request_id:
            payload["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = redactor.field(key, value) if redactor else value
        if record.exc_info:
            text = self.formatException(record.exc_info)
            payload["exc_info"] = redactor.text(text) if redactor else text
        if redactor is not None:
            self.redactions += redactor.count
        return json.dumps(payload, default=str, ensure_ascii=False)
