"""Callback test helpers: a tiny client endpoint (http.server in a thread) and an independent
Standard Webhooks verifier written from the spec, sharing no code with services/callbacks.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from apps.billing.models import BillingConfig
from apps.billing.tests.support.api import ApiTenant, make_tenant
from apps.billing.tests.support.builders import build_queue


class InvalidSignature(Exception):
    pass


def verify_standard_webhook(
    secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300, now: float | None = None
) -> dict[str, Any]:
    """https://www.standardwebhooks.com/ verification, as a receiving client would write it."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, timestamp, signatures = lowered["webhook-id"], lowered["webhook-timestamp"], lowered["webhook-signature"]
    if abs((now if now is not None else time.time()) - int(timestamp)) > tolerance:
        raise InvalidSignature("timestamp outside tolerance")
    key = base64.b64decode(secret.split("_", 1)[1]) if secret.startswith("whsec_") else secret.encode()
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise InvalidSignature("no matching v1 signature")


class Receiver:
    """Records each request; answers with `statuses` in order (the last repeats). `delay`
    holds the answer back; a 3xx answer carries a Location to `/elsewhere`."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.statuses = list(statuses or [200])
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    status = receiver.statuses[min(len(receiver.requests), len(receiver.statuses) - 1)]
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/billing"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(statuses: list[int] | None = None, delay: float = 0.0) -> Receiver:
        made.append(Receiver(statuses, delay))
        return made[-1]

    yield make
    for item in made:
        item.close()


@pytest.fixture(autouse=True)
def callback_breakers(settings):
    """Each test its own endpoint circuits (a unique Redis prefix, deleted afterwards), and a
    threshold high enough not to interfere; the circuit's own tests lower it."""
    prefix = f"test:callback-breaker:{uuid.uuid4().hex}"
    settings.BILLING_CALLBACK_BREAKER_KEY_PREFIX = prefix
    settings.BILLING_CALLBACK_BREAKER_THRESHOLD = 1000
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.ping()  # connect now: a test may replace DNS resolution (monkeypatched getaddrinfo)
    yield
    try:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def allow_loopback(settings):
    """The receiver lives on 127.0.0.1, which the SSRF rules refuse in production."""
    settings.BILLING_CALLBACK_ALLOW_PRIVATE = True


@pytest.fixture
def client_tenant(db) -> ApiTenant:
    return make_tenant("cb-client")


@pytest.fixture
def api(db) -> ApiTenant:
    return make_tenant("alpha")


def queue_for(api: ApiTenant, **fields):
    return build_queue(
        api.tenant,
        template=api.tenant.billing_templates.filter(template_type="overdue").first(),
        total=2,
        instance=api.instance,
        **fields,
    )


def set_callback(api: ApiTenant, url: str, *, contact_events: bool = False) -> BillingConfig:
    config = BillingConfig.for_tenant(api.tenant)
    config.callback_url = url
    config.callback_contact_events = contact_events
    config.save()
    return config
