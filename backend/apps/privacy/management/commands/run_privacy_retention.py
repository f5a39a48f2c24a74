"""`manage.py run_privacy_retention [--once] [--interval S] [--batch-size N]` — removes message
texts, rendered messages, variables and reply texts older than each tenant's retention
(apps/privacy/services/retention.py).

Its own process, not a step of billing's periodic task: privacy sits above billing and charges
(it clears their tables), and billing must not import it. It has no deadline to keep either: a
pass every few minutes is plenty, and each pass works in short batches. Safe with several
replicas (a batch rewrites rows idempotently; progress only moves forward).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time

from django.core.management.base import BaseCommand

from apps.common.health import record_process_heartbeat
from apps.common.metrics_exporter import start_metrics_server
from apps.privacy.services.retention import DEFAULT_BATCH_SIZE, run_retention

logger = logging.getLogger(__name__)
DEFAULT_INTERVAL = 300.0
HEARTBEAT_EVERY = 30.0  # the process's own liveness (its exporter's /healthz), between passes


class Command(BaseCommand):
    help = "Remove message texts and variables past each tenant's retention (loop, or once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="run one pass and exit")
        parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between passes")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="rows per transaction")

    def handle(self, *args, **options) -> None:
        stop = threading.Event()
        if not options["once"]:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            start_metrics_server("retention")  # METRICS_PORT: one port per process on a host
        next_pass = time.monotonic()
        while True:
            record_process_heartbeat("retention")
            if time.monotonic() >= next_pass:
                cleared = run_retention(batch_size=options["batch_size"])
                next_pass = time.monotonic() + options["interval"]
                if options["once"]:
                    self.stdout.write(json.dumps(cleared))
                    return
            if stop.wait(max(0.0, min(HEARTBEAT_EVERY, next_pass - time.monotonic()))):
                logger.info("privacy retention stopped")
                return
