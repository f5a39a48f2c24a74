"""Consume the billing queues: `manage.py run_billing_consumer [--queues ...] [--concurrency N]
[--max-queues M]`.

`--concurrency` sender threads step the queues this process holds, one step (one send) at a
time each; `--max-queues` bounds how many queues it holds (a waiting queue is a heap entry, not
a thread). Database connections come from Django's pool (DB_POOL_MAX_SIZE). See
apps/billing/dispatch/ and rabbitmq/billing_consumer.py.

SIGTERM or SIGINT (every deploy on Railway and docker compose): stop taking deliveries, let each
sender thread finish its step and hand every held queue back (republished), then exit 0 within
`send timeout + publish timeout + a few seconds`. A second signal exits at once (code 1): the
process's silence frees whatever it held within BILLING_CONSUMER_DEAD_AFTER_SECONDS. Exit code
3: the consumers could not be restored after a broker reconnection; the platform's restart
policy brings a fresh process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from apps.billing.broker.topology import ALL_QUEUES
from apps.billing.rabbitmq.billing_consumer import BillingConsumer

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Consume billing queues from RabbitMQ and send their messages."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--queues", nargs="+", choices=ALL_QUEUES, help="default: all six")
        parser.add_argument("--concurrency", type=int, help="sender threads (default BILLING_CONSUMER_CONCURRENCY)")
        parser.add_argument("--max-queues", type=int, help="queues held at most (default BILLING_CONSUMER_MAX_QUEUES)")
        parser.add_argument("--watchdog-interval", type=float, help="seconds between consumer checks (default 15)")
        parser.add_argument("--reconnect-interval", type=float, help="seconds between broker reconnections (default 5)")
        parser.add_argument(
            "--shutdown-grace", type=float, help="seconds workers get to stop (default: send + publish timeouts + 3)"
        )

    def handle(self, *args, **options) -> None:
        for name in ("concurrency", "max_queues"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1")
        consumer = BillingConsumer(
            queues=options["queues"],
            concurrency=options["concurrency"],
            max_queues=options["max_queues"],
            watchdog_interval=options["watchdog_interval"],
            reconnect_interval=options["reconnect_interval"],
            shutdown_grace=options["shutdown_grace"],
        )
        connections.close_all()  # the main thread needs none: the threads borrow from the pool
        self._start_metrics()
        code = asyncio.run(self._main(consumer))
        if code == 1:
            # A worker thread is still inside a provider call; the interpreter would wait for it.
            _exit_now(code)
        if code:
            raise SystemExit(code)

    @staticmethod
    def _start_metrics() -> None:
        from apps.common.metrics_exporter import start_metrics_server

        start_metrics_server("consumer")

    async def _main(self, consumer: BillingConsumer) -> int:
        loop = asyncio.get_running_loop()
        signals_seen = 0

        def on_signal(signum: int) -> None:
            nonlocal signals_seen
            signals_seen += 1
            if signals_seen > 1:
                logger.warning("second signal: exiting now", extra={"signal": signum})
                _exit_now(1)
            logger.info("shutdown requested", extra={"signal": signum, "grace_seconds": consumer.shutdown_grace})
            consumer.request_stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        return await consumer.run()


def _exit_now(code: int) -> None:
    """Leave without waiting for threads (their queues go back through the stale check)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
