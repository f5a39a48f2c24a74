"""Run the sandbox as a real OS process from tests and drive it over HTTP.

`backend/conftest.py` builds the `evolution_sandbox` fixture from these; other apps' tests use
that fixture rather than these classes directly. No Django imports: the helpers work in any
Python process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

BACKEND_DIR = Path(__file__).resolve().parents[1]
GLOBAL_API_KEY = "sandbox-global-key"


class SandboxError(RuntimeError):
    """The sandbox process did not start, or a control call failed."""


@dataclass(frozen=True)
class SandboxInstanceInfo:
    name: str
    token: str
    data: dict[str, Any]


class SandboxClient:
    """Small helpers over the `/_sandbox/` control endpoints of a running sandbox."""

    def __init__(self, base_url: str, api_key: str = GLOBAL_API_KEY, pid: int | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.pid = pid  # the sandbox process, when this client's owner started it
        self.http = requests.Session()

    # ------------------------------------------------------------------ raw access
    def control(self, method: str, route: str, payload: Any = None, params: dict[str, Any] | None = None) -> Any:
        """Call `/_sandbox{route}`; raise SandboxError on a 4xx/5xx."""
        query = {key: value for key, value in (params or {}).items() if value is not None}
        response = self.http.request(method, f"{self.base_url}/_sandbox{route}", json=payload, params=query, timeout=10)
        if response.status_code >= 400:
            raise SandboxError(f"{method} /_sandbox{route} → {response.status_code}: {response.text}")
        return response.json()

    # ------------------------------------------------------------------ instances
    def create_instance(self, name: str | None = None, token: str | None = None, **options: Any) -> SandboxInstanceInfo:
        """Create (or replace) an instance; a unique name and token by default. `provider="waha"`
        makes it a WAHA session (its token stands for the server's X-Api-Key)."""
        payload = {
            "name": name or f"inst-{uuid.uuid4().hex[:10]}",
            "token": token or uuid.uuid4().hex.upper(),
            **options,
        }
        data = self.control("POST", "/instances", payload)
        return SandboxInstanceInfo(name=data["name"], token=data["token"], data=data)

    def configure(self, name: str, **options: Any) -> dict[str, Any]:
        """Flip switches: state, latency_ms, fail_next, failure_status, rate_limit_next,
        retry_after, hang_next, hang_seconds, ambiguous_next, api_version, ack_delays, ..."""
        return self.control("PATCH", f"/instances/{name}", options)

    def set_state(self, name: str, state: str) -> dict[str, Any]:
        return self.configure(name, state=state)

    def instance(self, name: str) -> dict[str, Any]:
        return self.control("GET", f"/instances/{name}")

    def set_not_on_whatsapp(self, *numbers: str) -> dict[str, Any]:
        return self.control("PATCH", "/config", {"not_on_whatsapp": list(numbers)})

    def configure_server(self, **options: Any) -> dict[str, Any]:
        return self.control("PATCH", "/config", options)

    def scan(self, name: str) -> dict[str, Any]:
        """Scan the instance's pairing QR: it connects."""
        return self.control("POST", f"/instances/{name}/scan")

    def phone_logout(self, name: str) -> dict[str, Any]:
        """The number's owner logs this device out from the phone."""
        return self.control("POST", f"/instances/{name}/logout")

    def inbound(
        self, name: str, number: str, text: str, reply_to: str | None = None, push_name: str | None = None
    ) -> dict[str, Any]:
        payload = {"number": number, "text": text, "reply_to": reply_to, "push_name": push_name}
        return self.control("POST", f"/instances/{name}/inbound", {k: v for k, v in payload.items() if v is not None})

    # ------------------------------------------------------------------ records
    def messages(self, instance: str | None = None, number: str | None = None) -> list[dict[str, Any]]:
        return self.control("GET", "/messages", params={"instance": instance, "number": number})

    def requests(
        self, instance: str | None = None, path: str | None = None, method: str | None = None
    ) -> list[dict[str, Any]]:
        return self.control("GET", "/requests", params={"instance": instance, "path": path, "method": method})

    def send_requests(self, instance: str) -> list[dict[str, Any]]:
        """The sendText calls the sandbox received for `instance` (answered or not), Evolution's
        `/message/sendText/{instance}` or WAHA's `/api/sendText`."""
        return self.requests(instance=instance, path="sendText", method="POST")

    def webhooks(self, instance: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        return self.control("GET", "/webhooks", params={"instance": instance, "event": event})

    def clear(self, instance: str | None = None) -> None:
        """Forget messages, requests and webhook deliveries (instances stay)."""
        self.control("POST", "/clear", params={"instance": instance})

    def reset(self) -> None:
        """Back to the startup state: no instances (but startup ones), no records, default config."""
        self.control("POST", "/reset")

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every scheduled receipt and webhook delivery has run."""
        wait_for(lambda: self.control("GET", "/health")["pending_jobs"] == 0, timeout=timeout, what="sandbox idle")


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; return it, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class SandboxProcess:
    """The sandbox in its own OS process on a free loopback port (`--port 0`; the bound port
    comes back through `--ready-file`, so there is no pick-then-bind race)."""

    def __init__(
        self, *, api_key: str = GLOBAL_API_KEY, extra_args: list[str] | None = None, log_path: Path | None = None
    ) -> None:
        self.api_key = api_key
        self.extra_args = extra_args or []
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.pid = 0

    def start(self, timeout: float = 15.0) -> SandboxProcess:
        workdir = Path(tempfile.mkdtemp(prefix="evolution-sandbox-"))
        ready = workdir / "ready.json"
        log_path = self.log_path or workdir / "sandbox.log"
        command = [
            sys.executable,
            "-m",
            "devtools.evolution_sandbox.server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--api-key",
            self.api_key,
            "--ready-file",
            str(ready),
            "--log-level",
            "WARNING",
            *self.extra_args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(command, cwd=BACKEND_DIR, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.process.pid
        try:
            info = wait_for(lambda: self._ready_info(ready), timeout=timeout, what="sandbox ready file")
            self.base_url = info["base_url"]
            wait_for(self._answers, timeout=timeout, what="sandbox GET /")
        except TimeoutError as exc:
            self.stop()
            raise SandboxError(
                f"sandbox did not start: {exc}; log: {log_path.read_text(errors='replace')[-2000:]}"
            ) from exc
        return self

    def _ready_info(self, ready: Path) -> dict[str, Any] | None:
        if self.process is not None and self.process.poll() is not None:
            raise SandboxError(f"sandbox exited with {self.process.returncode}")
        if not ready.exists():
            return None
        return json.loads(ready.read_text())

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.base_url}/", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID, then SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def client(self) -> SandboxClient:
        return SandboxClient(self.base_url, self.api_key, pid=self.pid)


class WebhookReceiver:
    """A throw-away HTTP server that records the webhooks POSTed to it (path, headers, JSON).

    `statuses` are the answers to give, in order (the last one repeats), e.g. [500, 200] to
    make the sandbox retry once. Use as a context manager."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [200])
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    status = receiver.statuses[min(len(receiver.received), len(receiver.statuses) - 1)]
                    receiver.received.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "json": json.loads(body or b"null"),
                            "status": status,
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The envelopes received (optionally of one event), in arrival order."""
        with self._lock:
            return [item["json"] for item in self.received if event is None or item["json"].get("event") == event]

    def wait_for(self, count: int, event: str | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
        return wait_for(
            lambda: (found := self.events(event)) and len(found) >= count and found,
            timeout=timeout,
            what=f"{count} webhook(s) {event or ''}",
        )
