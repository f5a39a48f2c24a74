"""Headless Chromium and the ASGI server it browses, for the browser tests (the progress page,
the inbox, pairing); the `browser` and `web_server` fixtures of the root conftest use these.

Chromium is Debian's package (`scripts/browser.sh ensure` installs it); the tests drive it over
the DevTools protocol with the `websockets` client, so no WebDriver is needed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from devtools.processes import REPO

from .processes import free_port, subprocess_env, wait_until

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


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a process this test started, by its own PID (its session: the browser's helpers too)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


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


@contextmanager
def asgi_server(tmp_path: Path) -> Iterator[str]:
    """uvicorn serving config.asgi against the test database (committed rows: a transactional
    test); yields its base URL."""
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
        stop_process_group(process)
        log.close()


@contextmanager
def headless_chromium(tmp_path: Path, binary: str) -> Iterator[DevTools]:
    """Chromium on about:blank, driven through its first page target."""
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
        stop_process_group(process)
        log.close()
