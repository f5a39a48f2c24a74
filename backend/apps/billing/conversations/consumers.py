"""`ws/billing/inbox/?token=…`: the staff inbox's live updates (see live.py).

Checked once on the handshake: the token must be valid and unexpired, and its user still
active, staff and attached to the token's tenant. Refusals close with 4401 after accepting (a
refusal during the handshake reaches JavaScript only as 1006). Then every `inbox.update` of
the tenant is relayed as `{"type": "conversation", "conversation_id": N}`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .live import group_name, read_inbox_token
from .staff_access import inbox_tenant

CLOSE_UNAUTHENTICATED = 4401


def authorized_tenant(token: str) -> str | None:
    """The tenant id this token may watch, or None: the token's user must still pass the inbox
    pages' own rule (`inbox_tenant`) for the token's tenant."""
    from django.contrib.auth import get_user_model

    grant = read_inbox_token(token)
    if grant is None:
        return None
    user = get_user_model().objects.select_related("tenant_membership__tenant").filter(pk=grant.user_id).first()
    tenant = inbox_tenant(user)
    return grant.tenant_id if tenant is not None and str(tenant.pk) == str(grant.tenant_id) else None


class InboxConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        await self.accept()
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        tenant_id = await database_sync_to_async(authorized_tenant)((query.get("token") or [""])[0])
        if tenant_id is None:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = group_name(tenant_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "ready"})

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Read-only stream: anything a browser sends is ignored."""

    async def inbox_update(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "conversation", "conversation_id": event["conversation_id"]})
