"""The progress page in a real browser: headless Chromium opens the page served by a real ASGI
server (uvicorn, HTTP + WebSocket), while the worker sends a queue to the Evolution sandbox and
publishes progress after each message; the page's progress bar must climb to 100 %.

Chromium is Debian's package (`scripts/browser.sh ensure` installs it); the test drives it over
the DevTools protocol with the `websockets` client, so no WebDriver is needed. Without a
browser the test skips and says how to get one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from apps.billing.tests.pipeline.conftest import (
    REPO,
    notification_contacts,
    subprocess_env,
    wait_until,
)

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
]


def chromium_binary() -> str | None:
    for name in (os.environ.get("CHROMIUM_BIN", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Stop a process this test started, by its own PID (its session: the browser's helpers too)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def web_server(tmp_path, transactional_db) -> Iterator[str]:
    """uvicorn serving config.asgi against the test database; yields its base URL."""
    port = free_port()
    log = open(tmp_path / "uvicorn.log", "wb")
    env = subprocess_env(ALLOWED_HOSTS="127.0.0.1,localhost", SECURE_SSL_REDIRECT="0", LOG_LEVEL="WARNING")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--app-dir",
            "backend",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError("uvicorn exited: " + (tmp_path / "uvicorn.log").read_text(errors="replace")[-3000:])
        try:
            return urllib.request.urlopen(f"{base}/healthz", timeout=1).status == 200
        except OSError:
            return False

    try:
        wait_until(answers, timeout=60, what="uvicorn answers /healthz")
        yield base
    finally:
        _stop(process)
        log.close()


class DevTools:
    """The few DevTools-protocol calls the test needs, on one page target."""

    def __init__(self, websocket_url: str) -> None:
        from contextlib import ExitStack

        from websockets.sync.client import connect

        self._stack = ExitStack()
        self._socket = self._stack.enter_context(connect(websocket_url, max_size=None, open_timeout=10))
        self._next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=10))
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def browser(tmp_path) -> Iterator[DevTools]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium: run `bash scripts/browser.sh ensure` (installs Debian's chromium; needs root)")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    log = open(tmp_path / "chromium.log", "wb")
    process = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    port_file = Path(profile) / "DevToolsActivePort"
    devtools = None
    try:
        wait_until(
            lambda: port_file.exists() and port_file.read_text().strip(), timeout=30, what="Chromium's DevTools port"
        )
        port = int(port_file.read_text().splitlines()[0])
        targets = wait_until(
            lambda: [
                t
                for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                if t.get("type") == "page"
            ],
            timeout=15,
            what="a page target",
        )
        devtools = DevTools(targets[0]["webSocketDebuggerUrl"])
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        _stop(process)
        log.close()


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
