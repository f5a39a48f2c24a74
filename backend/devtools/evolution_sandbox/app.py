"""The sandbox application: its state, its background work, and the split between the
Evolution routes, the WAHA routes (`/api/...`) and the `/_sandbox/` control routes. No sockets
here (see server.py)."""

from __future__ import annotations

import threading

from . import control_api, provider_api, waha_api
from .events import EventSimulator
from .http_handler import Request, Response
from .scheduler import Scheduler
from .state import SandboxConfig, SandboxState
from .webhooks import WebhookEmitter

WAHA_PREFIX = "/api/"  # Evolution has no route under /api/


class SandboxApp:
    def __init__(self, config: SandboxConfig, initial_instances: list[tuple[str, str | None]] | None = None) -> None:
        self.state = SandboxState(config, initial_instances)
        # One worker: webhook deliveries reach the receiver in the order the events happened.
        self.scheduler = Scheduler(workers=1, name="sandbox-events")
        self.emitter = WebhookEmitter(self.state, self.scheduler)
        self.events = EventSimulator(self.state, self.scheduler, self.emitter)
        self._stopping = threading.Event()

    def handle(self, request: Request) -> Response:
        if request.path == control_api.PREFIX or request.path.startswith(control_api.PREFIX + "/"):
            return control_api.handle(self, request)
        if request.path.startswith(WAHA_PREFIX):
            return waha_api.handle(self, request)
        return provider_api.handle(self, request)

    def sleep(self, seconds: float) -> None:
        """Simulated latency and hangs; cut short when the server stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    def stopping(self, wait: float) -> bool:
        """Wait up to `wait` seconds; True when the server is stopping (give up the answer)."""
        return self._stopping.wait(wait)

    def close(self) -> None:
        self._stopping.set()
        self.scheduler.stop()
