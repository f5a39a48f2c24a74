"""Is the tenant's WhatsApp instance able to send right now?

The queue runner asks before every message, so answers are cached per process for a few seconds
(BillingConfig.health_cache_seconds); a send that fails as "instance unavailable" asks again at
once, uncached, because users see `state: open` while sends fail (then the failure counts toward
the contact's attempts instead of pausing the queue). Changes of state are written to the
instance row, so the admin, /readyz and the other consumer processes see them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from apps.billing.constants import QueueStatus
from apps.billing.services import number_protection
from apps.common.db_connections import release_connection
from apps.common.services.provider import client_for
from apps.common.services.provider_client import HealthResult
from apps.connections.models import WhatsAppInstance
from apps.connections.services import record_connection_state

if TYPE_CHECKING:  # both import this module
    from apps.billing.models import BillingQueue
    from apps.billing.services.queue_lease import Lease

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstanceHealth:
    healthy: bool
    reason: str


# An accepted send proves the number works at least as well as a health check would: for this
# long after one, no health check is made (a busy number is never checked between its sends;
# 1,000 numbers at 6 a minute would otherwise cost as many health calls as sends).
SEND_PROVES_HEALTH_SECONDS = 60.0


class InstanceHealthChecker:
    """Per-process cache of health answers, shared by the sender threads of one consumer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[float, datetime, InstanceHealth]] = {}  # pk → (monotonic, wall, answer)
        self._sent_ok: dict[int, float] = {}  # pk → monotonic time of the last accepted send

    def check(self, instance: WhatsAppInstance, *, max_age: float, client: Any = None) -> InstanceHealth:
        """The cached answer, or a new one from the provider through `client` (the runner's
        own). The row, as the caller last read it, wins over the cache when it is fresher and
        says `open`: another process checked the instance (a recovery check, say), so a queue
        it just resumed is not sent back to instance_down on this process's older answer; and a
        process's first question trusts an `open` checked within `max_age`."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(instance.pk)
            proved_at = self._sent_ok.get(instance.pk)
        if proved_at is not None and now - proved_at <= max(max_age, SEND_PROVES_HEALTH_SECONDS):
            return InstanceHealth(True, "a send was accepted")
        row_open_at = instance.health_checked_at if instance.health_state == WhatsAppInstance.HealthState.OPEN else None
        if (
            cached
            and now - cached[0] <= max_age
            and (cached[2].healthy or row_open_at is None or row_open_at <= cached[1])
        ):
            return cached[2]
        if max_age > 0 and row_open_at is not None:
            age = (timezone.now() - row_open_at).total_seconds()
            if 0 <= age <= max_age:
                health = InstanceHealth(True, instance.health_reason or "connected")
                self._remember(instance.pk, health, age=age)
                return health
        release_connection()  # no connection held through the provider's deadline
        result = (client or client_for(instance)).check_health()
        health = InstanceHealth(result.healthy, result.reason)
        self._remember(instance.pk, health)
        record_health(instance, result)
        return health

    def _remember(self, instance_id: int, health: InstanceHealth, *, age: float = 0.0) -> None:
        with self._lock:
            self._cache[instance_id] = (time.monotonic() - age, timezone.now() - timedelta(seconds=age), health)

    def send_accepted(self, instance_id: int) -> None:
        with self._lock:
            self._sent_ok[instance_id] = time.monotonic()

    def forget(self, instance_id: int) -> None:
        with self._lock:
            self._cache.pop(instance_id, None)
            self._sent_ok.pop(instance_id, None)


def record_health(instance: WhatsAppInstance, result: HealthResult) -> None:
    """Write the state to the instance row when it changed (or every minute, as a timestamp).
    A paired number whose session the provider reports lost is protected."""
    stale = instance.health_checked_at is None or (timezone.now() - instance.health_checked_at).total_seconds() > 60
    changed = instance.health_state != result.state
    if changed or stale:
        record_connection_state(instance=instance, state=result.state, reason=result.reason, at=result.checked_at)
        if changed:
            logger.info(
                "whatsapp instance health changed",
                extra={"instance_id": instance.pk, "state": result.state, "reason": result.reason[:200]},
            )
    if result.session_lost:
        number_protection.protect_lost_session(instance=instance, provider_state=result.provider_state or "lost")


class InstanceRecoveryService:
    """Queues wait in `instance_down` while their instance cannot send; recovery puts them back
    to `pending` (and the caller publishes them) once a health check says `open` — never for a
    protected number, until a person clears it."""

    @staticmethod
    def handle_instance_down(lease: Lease, reason: str, *, then: Callable[[], object] | None = None) -> bool:
        from apps.billing.services.queue_lease import release

        return release(lease, QueueStatus.INSTANCE_DOWN, pause_reason=f"instance_down: {reason}"[:200], then=then)

    @staticmethod
    def recover(instance: WhatsAppInstance) -> list[BillingQueue]:
        """If the instance is switched on and answers `open`, move its instance_down queues to
        pending, each with its `queue.resumed` callback in the same transaction; return them (the
        caller publishes them, after commit). Each move is a compare-and-swap on the status, so
        two consumers checking the same instance resume each queue once."""
        from django.db import transaction

        from apps.billing.models import BillingQueue
        from apps.billing.services import callbacks
        from apps.billing.services.queue_lease import return_to_pending

        if not instance.is_active or not instance.tenant.is_active or instance.is_protected:
            return []  # a protected number waits for a person (number_protection.py)
        release_connection()
        result = client_for(instance).check_health()
        record_health(instance, result)
        if not result.healthy:
            return []
        queues = list(BillingQueue.objects.filter(instance=instance, status=QueueStatus.INSTANCE_DOWN))
        resumed = []
        for queue in queues:
            with transaction.atomic():
                moved = return_to_pending(
                    BillingQueue.objects.filter(pk=queue.pk), from_statuses=[QueueStatus.INSTANCE_DOWN]
                )
                if moved:
                    callbacks.on_queue_resumed(queue)
            if moved:
                resumed.append(queue)
        if resumed:
            logger.info(
                "whatsapp instance recovered; queues resumed",
                extra={"instance_id": instance.pk, "queues": len(resumed)},
            )
        return resumed
