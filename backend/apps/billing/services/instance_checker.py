"""Is the tenant's WhatsApp instance able to send right now?

The worker asks before every message, so answers are cached per process for a few seconds
(BillingConfig.health_cache_seconds); a failed send that says the instance is down also counts
(`mark_unhealthy`), because users see `state: open` while sends fail with "Connection Closed".
Changes of state are written to the instance row, so the admin and /readyz see them.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from apps.billing.constants import QueueStatus
from apps.common.services.evolution_api_service import EvolutionAPIService, HealthResult
from apps.connections.models import WhatsAppInstance

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstanceHealth:
    healthy: bool
    reason: str


class InstanceHealthChecker:
    """Per-process cache of health answers, shared by the worker threads of one consumer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[float, InstanceHealth]] = {}

    def check(self, instance: WhatsAppInstance, *, max_age: float, client: Any = None) -> InstanceHealth:
        """The cached answer, or a new one from the provider through `client` (the worker's
        own, which in the consumer holds no database permit during the call)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(instance.pk)
        if cached and now - cached[0] <= max_age:
            return cached[1]
        result = (client or EvolutionAPIService(instance)).check_health()
        health = InstanceHealth(result.healthy, result.reason)
        with self._lock:
            self._cache[instance.pk] = (time.monotonic(), health)
        record_health(instance, result)
        return health

    def mark_unhealthy(self, instance: WhatsAppInstance, reason: str) -> None:
        with self._lock:
            self._cache[instance.pk] = (time.monotonic(), InstanceHealth(False, reason))

    def forget(self, instance_id: int) -> None:
        with self._lock:
            self._cache.pop(instance_id, None)


def record_health(instance: WhatsAppInstance, result: HealthResult) -> None:
    """Write the state to the instance row when it changed (or every minute, as a timestamp)."""
    stale = instance.health_checked_at is None or (timezone.now() - instance.health_checked_at).total_seconds() > 60
    if instance.health_state != result.state or stale:
        fields = result.as_model_fields()
        WhatsAppInstance.objects.filter(pk=instance.pk).update(**fields)
        for name, value in fields.items():
            setattr(instance, name, value)
        if instance.health_state != result.state:
            logger.info("whatsapp instance health changed",
                        extra={"instance_id": instance.pk, "state": result.state, "reason": result.reason[:200]})


class InstanceRecoveryService:
    """Queues wait in `instance_down` while their instance cannot send; recovery puts them back
    to `pending` (and the caller publishes them) once a health check says `open`."""

    @staticmethod
    def handle_instance_down(lease, reason: str) -> bool:
        from apps.billing.services.queue_lease import release

        return release(lease, QueueStatus.INSTANCE_DOWN, pause_reason=f"instance_down: {reason}"[:200])

    @staticmethod
    def recover(instance: WhatsAppInstance) -> list:
        """If the instance answers `open`, move its instance_down queues to pending; return them."""
        from apps.billing.models import BillingQueue

        result = EvolutionAPIService(instance).check_health()
        record_health(instance, result)
        if not result.healthy:
            return []
        queues = list(BillingQueue.objects.filter(instance=instance, status=QueueStatus.INSTANCE_DOWN))
        resumed = []
        for queue in queues:
            moved = BillingQueue.objects.filter(pk=queue.pk, status=QueueStatus.INSTANCE_DOWN).update(
                status=QueueStatus.PENDING, pause_reason="", next_resume_at=None, last_published_at=None,
                updated_at=timezone.now(),
            )
            if moved:
                resumed.append(queue)
        if resumed:
            logger.info("whatsapp instance recovered; queues resumed",
                        extra={"instance_id": instance.pk, "queues": len(resumed)})
        return resumed
