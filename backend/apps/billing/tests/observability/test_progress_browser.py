"""The progress page in a real browser: headless Chromium opens the page served by a real ASGI
server (uvicorn, HTTP + WebSocket), while the worker sends a queue to the Evolution sandbox and
publishes progress after each message; the page's progress bar must climb to 100 %.

Chromium is Debian's package (`scripts/browser.sh ensure` installs it); the test drives it over
the DevTools protocol with the `websockets` client, so no WebDriver is needed. Without a
browser the test skips and says how to get one.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests

from apps.billing.tests.support.processes import notification_contacts, wait_until

pytestmark = pytest.mark.slow

READ_PAGE = """JSON.stringify({
  bar: document.getElementById('bar') ? document.getElementById('bar').value : null,
  connection: window.billingProgress ? window.billingProgress.connection : null,
  status: window.billingProgress && window.billingProgress.last ? window.billingProgress.last.status : null,
  sent: window.billingProgress && window.billingProgress.last ? window.billingProgress.last.sent : null,
  address: window.location.href
})"""


def test_the_progress_bar_moves_as_the_sandbox_receives_messages(pipeline_tenant, web_server, browser, monkeypatch):
    from apps.billing.dispatch.engine import run_queue_here
    from apps.billing.progress import publish_queue_progress
    from apps.billing.services import queue_lease

    tenant = pipeline_tenant(messages_per_minute=120)  # one message every 0.5 s
    body = tenant.send("notification", notification_contacts(6), external_id="browser-1")
    queue_id = body["queue_id"]

    token = requests.post(
        f"{web_server}/api/v1/billing/queue/{queue_id}/ws-token",
        headers={"X-Billing-API-Key": tenant.raw_key},
        timeout=10,
    )
    assert token.status_code == 200, token.text
    browser.call("Page.navigate", url=web_server + token.json()["progress_url"])

    def page() -> dict[str, Any]:
        return json.loads(browser.evaluate(READ_PAGE) or "{}")

    first = wait_until(
        lambda: (state := page()).get("status") == "pending" and state, timeout=20, what="the page's first snapshot"
    )
    assert first["bar"] == 0 and first["connection"] == "open"
    assert "token=" not in first["address"]  # the page drops it from the address bar

    # The runner publishes after each outcome (as in the consumer), through the same function,
    # from its own thread.
    real_record_sent = queue_lease.record_sent

    def record_sent_and_publish(lease, contact, **kwargs):
        recorded = real_record_sent(lease, contact, **kwargs)
        publish_queue_progress(lease.queue_id)
        return recorded

    monkeypatch.setattr(queue_lease, "record_sent", record_sent_and_publish)
    outcome: dict[str, Any] = {}

    def work() -> None:
        from django.db import connection

        try:
            outcome["result"] = run_queue_here(queue_id, holder="browser-test")
            publish_queue_progress(queue_id, force=True)
        finally:
            connection.close()

    worker = threading.Thread(target=work, name="browser-test-worker")
    worker.start()
    seen: list[tuple[float, int]] = []  # (bar value, messages the sandbox had)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = page()
        delivered = len(tenant.messages())
        if state.get("bar") is not None and (not seen or state["bar"] != seen[-1][0]):
            seen.append((state["bar"], delivered))
        if state.get("status") == "completed":
            break
        time.sleep(0.1)
    worker.join(30)

    assert outcome["result"].outcome == "completed", outcome
    assert len(tenant.messages()) == 6
    values = [value for value, _ in seen]
    assert values == sorted(values), f"the bar went backwards: {seen}"
    assert values[-1] == 100 and len(set(values)) >= 3, f"the bar did not climb step by step: {seen}"
    # Never ahead of the provider: each value shown was backed by messages the sandbox had
    # (the page shows one decimal).
    assert all(value <= round(100 * delivered / 6, 1) for value, delivered in seen), seen
