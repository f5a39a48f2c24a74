"""Secrets that live in URLs never reach a log line.

Some URLs carry their secret: the provider webhook paths (`/webhooks/evolution/<secret>/`,
`/webhooks/waha/<secret>/`),
a client's callback URL (`https://user:password@crm.example/hook?token=...`). Our own code
logs hosts, never URLs; this filter covers the lines we do not write ourselves, above all
Django's `django.request` warning on every 4xx/5xx ("Unauthorized: /api/v1/billing/webhooks/
evolution/<secret>/", with the request attached) and the servers' access lines.

Installed on those loggers (so every handler, the test log capture included, sees the clean
record) and on the console handler (everything else) by settings.LOGGING.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_PATH_SECRETS = re.compile(r"(/webhooks/(?:evolution|waha)/)[^/\s'\"?#]+")  # the instance's webhook secret
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"?#]*)\?[^\s'\"#]*")


def redact_url_secrets(text: str) -> str:
    """`text` with URL userinfo, URL query strings and webhook path secrets replaced."""
    text = _PATH_SECRETS.sub(rf"\g<1>{REDACTED}", text)
    text = _USERINFO.sub(rf"\g<1>{REDACTED}@", text)
    return _QUERY.sub(rf"\g<1>?{REDACTED}", text)


class URLSecretsFilter(logging.Filter):
    """Rewrites the record in place (message, and the `request` Django attaches); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_url_secrets(message)
        if clean != message:
            record.msg, record.args = clean, ()
        request = getattr(record, "request", None)
        if request is not None and not isinstance(request, str):
            record.request = redact_url_secrets(f"{getattr(request, 'method', '')} {getattr(request, 'path', '')}")
        return True
