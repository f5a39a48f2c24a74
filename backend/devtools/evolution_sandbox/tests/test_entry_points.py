"""The two ways to start the sandbox: `python -m devtools.evolution_sandbox.server` (no Django)
and `manage.py run_evolution_sandbox`; startup options; loopback by default; clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from devtools.evolution_sandbox import server
from devtools.sandbox_process import BACKEND_DIR, SandboxProcess, wait_for

REPO_DIR = BACKEND_DIR.parent


@pytest.mark.slow
def test_the_module_starts_with_startup_instances_that_survive_a_reset():
    process = SandboxProcess(extra_args=["--instance", "demo:DEMO-TOKEN", "--not-on-whatsapp", "5511911112222"]).start()
    try:
        client = process.client()
        client.reset()
        assert client.instance("demo")["token"] == "DEMO-TOKEN"
        assert client.control("GET", "/config")["not_on_whatsapp"] == ["5511911112222"]
        response = requests.post(
            f"{process.base_url}/message/sendText/demo",
            json={"number": "5511998765432", "text": "oi"},
            headers={"apikey": "DEMO-TOKEN"},
            timeout=5,
        )
        assert response.status_code == 201
        assert process.base_url.startswith("http://127.0.0.1:")
    finally:
        process.stop()
    assert process.process.returncode == 0  # SIGTERM is a clean shutdown


@pytest.mark.slow
def test_the_management_command_runs_the_same_server(tmp_path: Path):
    ready = tmp_path / "ready.json"
    env = {**os.environ, "LOG_FORMAT": "text"}
    command = [
        sys.executable,
        "manage.py",
        "run_evolution_sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--instance",
        "demo:TOKEN",
        "--ready-file",
        str(ready),
    ]
    process = subprocess.Popen(
        command, cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    try:
        info = wait_for(lambda: ready.exists() and json.loads(ready.read_text()), timeout=20, what="ready file")
        assert info["pid"] == process.pid
        state = requests.get(
            f"{info['base_url']}/instance/connectionState/demo", headers={"apikey": "TOKEN"}, timeout=5
        )
        assert state.json() == {"instance": {"instanceName": "demo", "state": "open"}}
    finally:
        os.kill(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Evolution API sandbox listening on http://127.0.0.1:" in output


def test_it_binds_to_loopback_by_default(monkeypatch):
    monkeypatch.delenv("EVOLUTION_SANDBOX_HOST", raising=False)
    monkeypatch.delenv("EVOLUTION_SANDBOX_PORT", raising=False)

    options = server.build_parser().parse_args([])

    assert (options.host, options.port, options.api_key) == ("127.0.0.1", 8081, "sandbox-global-key")


def test_startup_instances_come_from_options_or_environment():
    assert server.parse_instances(["demo:TOKEN", "other"]) == [("demo", "TOKEN"), ("other", None)]
    with pytest.raises(ValueError):
        server.parse_instances([":TOKEN"])
