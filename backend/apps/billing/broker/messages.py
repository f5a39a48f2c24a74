"""Broker messages carry ids only (the database holds the rest). One shape, parsed in one place."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


class PoisonMessage(ValueError):
    """A body we cannot understand: dead-letter it, never requeue."""


@dataclass(frozen=True)
class BillingMessage:
    type: str  # a template type, or "resume" / "check_stale" / "check_recovery"
    queue_id: str | None = None
    tenant_id: str | None = None
    instance_id: int | None = None
    holder: str | None = None  # check_stale: the consumer process that held the queue
    attempt: int = 1
    request_id: str | None = None
    published_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_bytes(self) -> bytes:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}).encode()

    @classmethod
    def from_bytes(cls, body: bytes) -> BillingMessage:
        try:
            data: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PoisonMessage("body is not JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise PoisonMessage("body is not a billing message")
        queue_id = data.get("queue_id")
        if queue_id is not None:
            try:
                queue_id = str(uuid.UUID(str(queue_id)))
            except ValueError as exc:
                raise PoisonMessage("queue_id is not a UUID") from exc
        instance_id = data.get("instance_id")
        if instance_id is not None and (not isinstance(instance_id, int) or isinstance(instance_id, bool)):
            raise PoisonMessage("instance_id is not an integer")
        attempt = data.get("attempt", 1)
        holder = data.get("holder")
        if holder is not None and not isinstance(holder, str):
            raise PoisonMessage("holder is not a string")
        return cls(
            type=data["type"],
            queue_id=queue_id,
            tenant_id=data.get("tenant_id") and str(data["tenant_id"]),
            instance_id=instance_id,
            holder=holder,
            attempt=attempt if isinstance(attempt, int) else 1,
            request_id=data.get("request_id") if isinstance(data.get("request_id"), str) else None,
            published_at=str(data.get("published_at", "")),
        )
