"""`manage.py run_billing_periodic_tasks [--once] [--interval S]` — replaces Celery Beat.

Each cycle (every BILLING_PERIODIC_INTERVAL seconds) looks for queues whose business hours
opened, instances to check for recovery and queues whose consumer died or stopped tending
them, and publishes one control message each for the consumers to act on
(apps/billing/dispatch/control.py); it also publishes pending queues the broker may never have
got. It makes no HTTP call itself, so no provider or client endpoint can stall it. Two replicas
are safe: a cycle runs under a PostgreSQL advisory lock, so only one replica works at a time,
and every step is idempotent anyway.
"""

from __future__ import annotations

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from apps.billing.metrics import update_queue_gauges
from apps.billing.services.periodic import run_cycle
from apps.common.health import record_process_heartbeat
from apps.common.metrics_exporter import start_metrics_server

logger = logging.getLogger(__name__)
ADVISORY_LOCK_KEY = 0x62696C6C  # "bill"


class Command(BaseCommand):
    help = "Run the billing periodic tasks (loop, or once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="run one cycle and exit")
        parser.add_argument("--interval", type=float, default=None, help="seconds between cycles")

    def handle(self, *args, **options) -> None:
        interval = options["interval"] or float(settings.BILLING_PERIODIC_INTERVAL)
        stop = threading.Event()
        if not options["once"]:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        if not options["once"]:
            start_metrics_server("periodic")
        while True:
            record_process_heartbeat("periodic")
            results = self._cycle()
            update_queue_gauges()
            if options["once"]:
                self.stdout.write(str(results if results is not None else "skipped: another replica holds the lock"))
                return
            if stop.wait(interval):
                logger.info("billing periodic tasks stopped")
                return

    def _cycle(self) -> dict[str, int] | None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
            if not cursor.fetchone()[0]:
                return None
        try:
            results = run_cycle()
            if any(results.values()):
                logger.info("billing periodic cycle", extra={"results": results})
            return results
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
