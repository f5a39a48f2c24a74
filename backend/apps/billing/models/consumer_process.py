"""A running `run_billing_consumer` process, as the database knows it.

Why a row: a process killed with SIGKILL (an out-of-memory kill, a platform restart) writes
nothing on its way out, and the queues it held stay `running`. Each consumer process heartbeats
its row every few seconds; a row silent past `BILLING_CONSUMER_DEAD_AFTER_SECONDS` (never less
than three heartbeats) means the process is gone, and the queues it held (`BillingQueue.
processing_by` = its id) are released with the usual fencing — in seconds, whatever each
tenant's `stale_threshold_seconds` says (Solid Queue's process pruning does the same).
"""

from __future__ import annotations

from django.db import models


class ConsumerProcess(models.Model):
    id = models.CharField(primary_key=True, max_length=200, help_text="host:pid:random, as in processing_by.")
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
    queues_held = models.PositiveIntegerField(default=0, help_text="Queues the process held at its last heartbeat.")

    class Meta:
        verbose_name = "consumer process"

    def __str__(self) -> str:
        return self.id
