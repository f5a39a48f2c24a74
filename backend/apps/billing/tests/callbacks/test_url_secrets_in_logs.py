"""Secrets in URLs never reach a log line, whatever the answer: a callback URL's userinfo and
query string, and the provider webhook's path secret (Django warns on every 4xx with the path)."""

from __future__ import annotations

import logging
import socket

import pytest
from django.urls import reverse

from apps.billing.services import callback_delivery, callbacks
from apps.billing.tests.support.api import make_tenant
from apps.common.logging import JsonFormatter

from .conftest import queue_for, set_callback

USER_SECRET = "pa55-userinfo-secret"
QUERY_SECRET = "s3cr3t-query-token"


def all_lines(caplog) -> str:
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


def secret_url(base: str) -> str:
    """`http://127.0.0.1:port/path` → the same with userinfo and a secret query string."""
    scheme, rest = base.split("://", 1)
    return f"{scheme}://crm:{USER_SECRET}@{rest}?token={QUERY_SECRET}&tenant=1"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("status", [200, 302, 404, 410, 500, 503])
def test_a_callback_url_secret_is_never_logged_whatever_the_answer(db, receiver, allow_loopback, caplog, status):
    caplog.set_level(logging.DEBUG)
    endpoint = receiver([status])
    api = make_tenant(f"secret-{status}")
    set_callback(api, secret_url(endpoint.url))

    callbacks.on_queue_started(queue_for(api))
    assert callback_delivery.deliver_due() == 1

    assert len(endpoint.requests) == 1
    assert QUERY_SECRET in endpoint.requests[0]["path"]  # the client got its token...
    lines = all_lines(caplog)
    assert "billing callback" in lines
    assert QUERY_SECRET not in lines and USER_SECRET not in lines  # ...and no log line did


def test_a_callback_url_secret_is_never_logged_when_the_endpoint_is_unreachable(
    db, allow_loopback, caplog, closed_port
):
    caplog.set_level(logging.DEBUG)
    api = make_tenant("secret-unreachable")
    set_callback(api, secret_url(f"http://127.0.0.1:{closed_port}/hooks"))

    callbacks.on_queue_started(queue_for(api))
    callback_delivery.deliver_due()

    lines = all_lines(caplog)
    assert "will be retried" in lines
    assert QUERY_SECRET not in lines and USER_SECRET not in lines


def test_a_callback_url_secret_is_never_logged_when_the_url_is_refused(db, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    endpoint = receiver()  # loopback, and the address rules are on
    api = make_tenant("secret-refused")
    set_callback(api, secret_url(endpoint.url))

    callbacks.on_queue_started(queue_for(api))
    callback_delivery.deliver_due()

    lines = all_lines(caplog)
    assert "refused" in lines
    assert QUERY_SECRET not in lines and USER_SECRET not in lines


@pytest.mark.parametrize("body", [b"not json", b'{"event": "messages.update"}'])
def test_the_webhook_path_secret_is_never_logged_on_a_4xx(db, client, caplog, body):
    caplog.set_level(logging.DEBUG)
    api = make_tenant("hook-secret")
    secret = api.instance.webhook_secret
    url = reverse("billing:evolution-webhook", kwargs={"token": secret})

    response = client.post(url, data=body, content_type="application/json")
    wrong = client.post(
        reverse("billing:evolution-webhook", kwargs={"token": secret[::-1]}), data=body, content_type="application/json"
    )

    assert 400 <= response.status_code < 500 and 400 <= wrong.status_code < 500
    lines = all_lines(caplog)
    assert "/webhooks/evolution/[redacted]" in lines  # Django's own warning, cleaned
    assert secret not in lines and secret[::-1] not in lines
