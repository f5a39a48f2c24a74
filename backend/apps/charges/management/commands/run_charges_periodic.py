"""`manage.py run_charges_periodic [--once] [--interval S]` — the charges job, every few minutes.

Each cycle escalates charges past the tenant's escalation age and materialises today's due
cadence steps as billing queues (apps/charges/services/periodic.py). Safe with several
replicas: materialisation holds a per-tenant advisory lock, escalation skips locked rows, and
both are idempotent. A step due today is queued at the first cycle of the day (or the first
after the charge arrives), so the interval bounds how late a same-day charge starts.
"""

from __future__ import annotations

import json
import logging
import signal
import threading

from django.core.management.base import BaseCommand

from apps.charges.services.periodic import run_cycle
from apps.common.health import record_process_heartbeat
from apps.common.metrics_exporter import start_metrics_server

logger = logging.getLogger(__name__)
DEFAULT_INTERVAL = 60.0  # beats the process heartbeat's 90 s stale period


class Command(BaseCommand):
    help = "Escalate old charges and queue today's cadence steps (loop, or once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="run one cycle and exit")
        parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between cycles")

    def handle(self, *args, **options) -> None:
        stop = threading.Event()
        if not options["once"]:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            start_metrics_server("charges")  # METRICS_PORT: one port per process on a host
        while True:
            record_process_heartbeat("charges")
            results = run_cycle()
            if results["queued"] or results["skipped"] or results["escalated"] or results["failed"]:
                logger.info("charges cycle", extra={"results": results})
            if options["once"]:
                self.stdout.write(json.dumps(results))
                return
            if stop.wait(options["interval"]):
                logger.info("charges periodic stopped")
                return
