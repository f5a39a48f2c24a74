"""`manage.py run_billing_callbacks [--once]` — delivers the signed client callbacks.

Its own process (Procfile `billing_callbacks`), so a slow or hostile client endpoint can never
hold up the periodic tasks (resumes, stale releases, instance recovery, republishing) nor the
sends. Several replicas are safe: deliveries are claimed with SKIP LOCKED. SIGTERM lets the
attempts in flight finish (each bounded by BILLING_CALLBACK_DEADLINE) and exits.
See services/callback_delivery.py.
"""

from __future__ import annotations

import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.billing.services.callback_delivery import CallbackDispatcher, deliver_due
from apps.common.health import record_process_heartbeat
from apps.common.metrics_exporter import start_metrics_server

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Deliver client callbacks (loop, or one round with --once)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="attempt what is due now, one by one, and exit")

    def handle(self, *args, **options) -> None:
        if options["once"]:
            self.stdout.write(f"attempted {deliver_due()}")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        start_metrics_server("callbacks")
        dispatcher = CallbackDispatcher()
        heartbeat = threading.Thread(target=self._heartbeat, args=(stop,), name="callbacks-heartbeat", daemon=True)
        heartbeat.start()
        logger.info(
            "billing callbacks started", extra={"workers": dispatcher.workers, "per_tenant": dispatcher.per_tenant}
        )
        try:
            dispatcher.run(stop)
        finally:
            dispatcher.shutdown()
            logger.info("billing callbacks stopped")

    @staticmethod
    def _heartbeat(stop: threading.Event) -> None:
        interval = float(settings.BILLING_PROCESS_HEARTBEAT_SECONDS)
        while not stop.is_set():
            record_process_heartbeat("callbacks")
            stop.wait(interval)
