"""A project process (`manage.py <command>`) that a test or a benchmark starts and owns.

Stopped by its PID, never by name (another run's consumers may share the machine); its output
goes to one log file the caller names, read back when something fails. The CPU and memory
read-outs come from /proc, so a benchmark measures the process itself, not the machine.
Standard library only: the benchmarks import it before Django is set up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from signal import SIGKILL, SIGTERM
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ManagedProcess:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, *, append: bool = False) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab" if append else "wb")  # noqa: SIM115 - open for the process's lifetime, closed by stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def kill(self, signum: int = SIGKILL, timeout: float = 30.0) -> None:
        """Send `signum` and wait for the process to end."""
        if self.alive():
            os.kill(self.pid, signum)
            self.process.wait(timeout)

    def stop(self, grace: float = 0.0) -> None:
        """End it: SIGTERM first when `grace` is given (a consumer hands its queues back), then
        SIGKILL for what is left; the log is closed either way."""
        if grace and self.alive():
            os.kill(self.pid, SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill(SIGKILL, timeout=10.0)
        self._log.close()

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines it wrote (anything else, a traceback, skipped)."""
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
        return lines

    def cpu_seconds(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the process, all its threads."""
        return cpu_split(self.pid)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def cpu_split(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process `pid` spent so far."""
    return sum(cpu_split(pid))


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy: every process (PostgreSQL, the sandbox, other
    people's work) included."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS  # less idle and iowait
