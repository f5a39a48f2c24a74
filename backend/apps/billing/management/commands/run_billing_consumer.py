"""Consume the billing queues: `manage.py run_billing_consumer [--queues ...] [--concurrency N]`.

SIGTERM or SIGINT (every deploy on Railway and docker compose): stop taking deliveries, let each
worker finish the message in flight and hand its queue back (republished), then exit. A second
signal exits at once.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal

from django.core.management.base import BaseCommand, CommandError

from apps.billing.rabbitmq.billing_consumer import BillingConsumer
from apps.billing.rabbitmq.topology import ALL_QUEUES

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Consume billing queues from RabbitMQ and send their messages."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--queues", nargs="+", choices=ALL_QUEUES, help="default: all six")
        parser.add_argument("--concurrency", type=int, help="worker slots (default BILLING_CONSUMER_CONCURRENCY)")

    def handle(self, *args, **options) -> None:
        if options["concurrency"] is not None and options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        consumer = BillingConsumer(queues=options["queues"], concurrency=options["concurrency"])
        code = asyncio.run(self._main(consumer))
        if code:
            raise SystemExit(code)

    async def _main(self, consumer: BillingConsumer) -> int:
        loop = asyncio.get_running_loop()
        signals_seen = 0

        def on_signal(signum: int) -> None:
            nonlocal signals_seen
            signals_seen += 1
            if signals_seen > 1:
                logger.warning("second signal: exiting now", extra={"signal": signum})
                os._exit(1)
            logger.info("shutdown requested", extra={"signal": signum})
            consumer.request_stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        return await consumer.run()
