"""The one way an audit event is written: `record_event`, called by the services (and admin
paths) that make the change, in the change's own transaction, so an event exists exactly when
its change committed. Not signals: the actor and the IP are known only where the change is
asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models
from django.http import HttpRequest

from apps.common.http import client_ip

from .models import ActorKind, AuditEvent


@dataclass(frozen=True)
class Actor:
    kind: str
    id: str = ""
    label: str = ""
    ip: str | None = None

    @classmethod
    def of_request(cls, request: HttpRequest) -> Actor:
        """The API key of an API request (DRF puts it in `request.auth`), else the logged-in user."""
        key = getattr(request, "auth", None)
        ip = client_ip(request)
        if key is not None and hasattr(key, "display_prefix"):
            return cls(kind=ActorKind.API_KEY, id=str(key.pk), label=key.display_prefix, ip=ip)
        user = request.user
        return cls(kind=ActorKind.USER, id=str(user.pk), label=user.get_username()[:150], ip=ip)

    @classmethod
    def command(cls, name: str) -> Actor:
        """An operator's management command (no request, no IP)."""
        return cls(kind=ActorKind.SYSTEM, label=f"manage.py {name}"[:150])


def record_event(
    *,
    actor: Actor,
    tenant_id: Any,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one event. `obj` names the object (its model and primary key); without it, pass
    `object_type`/`object_id`. `details` must hold no personal data (ids, counts, field names)."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    return AuditEvent.objects.create(
        tenant_id=tenant_id,
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_label=actor.label,
        ip=actor.ip,
        action=action,
        object_type=object_type,
        object_id=object_id[:64],
        details=details or {},
    )


def audit_change(
    request: HttpRequest,
    *,
    tenant: Any,
    action: str,
    obj: models.Model | None = None,
    details: dict[str, Any] | None = None,
    **names: str,
) -> AuditEvent:
    """`record_event` for an admin or API request: the actor and IP come from the request."""
    return record_event(
        actor=Actor.of_request(request),
        tenant_id=getattr(tenant, "pk", tenant),
        action=action,
        obj=obj,
        details=details,
        **names,
    )
