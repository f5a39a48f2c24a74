"""A second RabbitMQ node that the crash tests start, stop and restart by PID.

The suite's own broker (scripts/services.sh, port 55672) is shared by every test and must never
be stopped, so the broker-outage tests run against this one instead: same binary and start-up
as services.sh (`rabbitmq-server` in the foreground, as user `rabbitmq` when we are root), its
own node name, ports and data under a private temporary directory. Its data survives a
restart, like a real broker's: durable queues and persistent messages are still there.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devtools.amqp_ping import answers

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def amqp_answers(port: int) -> bool:
    """A real AMQP handshake (devtools/amqp_ping.py): RabbitMQ accepts TCP before it can serve."""
    return answers("127.0.0.1", port)


class SecondBroker:
    """`start()`, `stop()`, `restart()`; `url` for the processes under test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"billing_crash_{os.getpid()}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="billing-rmq-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "console.log"
        (self.dir / "mnesia").mkdir()
        (self.dir / "log").mkdir()
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.port}\nloopback_users = none\ndisk_free_limit.absolute = 50MB\n"
        )
        cookie = self.dir / ".erlang.cookie"
        cookie.write_text(os.urandom(16).hex())
        cookie.chmod(0o400)
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.dir, "rabbitmq", "rabbitmq")
            for path in self.dir.rglob("*"):
                shutil.chown(path, "rabbitmq", "rabbitmq")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_CRASH_DUMP": str(self.dir / "log" / "erl_crash.dump"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "rabbitmq.pid"),
        }

    def start(self, timeout: float = 90.0) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        command = [str(RABBITMQ_SERVER)]
        if self._as_root:  # like services.sh: the broker's files belong to `rabbitmq`
            command = [
                "runuser",
                "-u",
                "rabbitmq",
                "--",
                "env",
                *(f"{k}={v}" for k, v in self._env().items()),
                *command,
            ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.dir,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not amqp_answers(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq exited ({self.process.returncode}): {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq did not answer within {timeout}s: {self.tail()}")
            time.sleep(0.25)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the process group we started (a clean broker shutdown), SIGKILL if slow."""
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session: the group is the launcher's PID
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(10)
        deadline = time.monotonic() + 10
        while amqp_answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the node and its epmd (asked through its port, not found by name); drop the data."""
        self.stop()
        subprocess.run(
            ["epmd", "-kill"],
            env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)},
            capture_output=True,
            timeout=10,
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
