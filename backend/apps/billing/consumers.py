"""`ws/billing/queues/<queue_id>/`: live progress of one queue.

Authentication, checked once on the handshake, like the HTTP API:
- servers send `X-Billing-API-Key` (same checks as the API: valid, active, not expired, tenant
  active, client IP allowed);
- browsers, which cannot set headers on a WebSocket, send `?token=` obtained from
  `POST /api/v1/billing/queue/<id>/ws-token` (signed, short-lived, bound to that queue, its
  tenant and the key that asked; the key must still be active).

The connection is accepted first and then closed with a code a browser can read (a refusal
during the handshake reaches JavaScript only as 1006): 4401 not authenticated, 4403 forbidden
(IP not allowed), 4404 no such queue *for this tenant* (another tenant's queue looks exactly
like a queue that does not exist), 4429 too many attempts from this IP (the API's per-IP
limit, counted before the key is checked). Then: one snapshot, and every group message after.

The key's IP allow-list applies to the header; a token carries no such check, because it was
issued to a caller that passed it and is meant for a browser somewhere else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.billing.progress import (
    WATCH_SECONDS,
    group_name,
    mark_watched,
    queue_snapshot,
    read_ws_token,
)

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_RATE_LIMITED = 4429
API_KEY_HEADER = b"x-billing-api-key"


class QueueProgressConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    _lease: asyncio.Task | None = None

    async def connect(self) -> None:
        await self.accept()
        queue_id = str(self.scope["url_route"]["kwargs"].get("queue_id", ""))
        code, snapshot = await database_sync_to_async(authorize)(self.scope, queue_id)
        if snapshot is None:
            await self.close(code=code)
            return
        self.group = group_name(snapshot["queue_id"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self._renew(snapshot["queue_id"])
        self._lease = asyncio.create_task(self._keep_watching(snapshot["queue_id"]))
        await self.send_json(snapshot)

    async def disconnect(self, code: int) -> None:
        if self._lease is not None:
            self._lease.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _keep_watching(self, queue_id: str) -> None:
        """Progress is pushed only for watched queues: renew this socket's lease while it is open."""
        while True:
            await asyncio.sleep(WATCH_SECONDS / 2)
            await self._renew(queue_id)

    @staticmethod
    async def _renew(queue_id: str) -> None:
        try:
            await sync_to_async(mark_watched, thread_sensitive=False)(queue_id)
        except Exception:
            logger.warning("billing progress watch not recorded", extra={"queue_id": queue_id})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Read-only stream: `{"type": "refresh"}` asks for a fresh snapshot; anything else is ignored."""
        if isinstance(content, dict) and content.get("type") == "refresh" and self.group:
            queue_id = self.group.rsplit(".", 1)[-1]
            snapshot = await database_sync_to_async(queue_snapshot)(queue_id)
            if snapshot is not None:
                await self.send_json(snapshot)

    async def queue_progress(self, event: dict[str, Any]) -> None:
        await self.send_json(event["data"])


def _header(scope: Mapping[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin1").strip()
    return ""


def _client_ip(scope: Mapping[str, Any]) -> str:
    """The same rule as the HTTP API (TRUSTED_PROXY_HOPS, apps.common.http.client_ip)."""
    from django.http import HttpRequest

    from apps.common.http import client_ip

    request = HttpRequest()
    client = scope.get("client") or ("", 0)
    request.META["REMOTE_ADDR"] = client[0] or ""
    forwarded = _header(scope, b"x-forwarded-for")
    if forwarded:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_ip(request)


def authorize(scope: Mapping[str, Any], queue_id: str) -> tuple[int, dict[str, Any] | None]:
    """(close code, None) on refusal, (0, snapshot) when this caller may watch the queue."""
    from django.conf import settings

    from apps.billing.models import BillingAPIKey
    from apps.common.rate_limiting import hit

    ip = _client_ip(scope)
    if not hit(f"billing-ip:{ip}", int(settings.BILLING_IP_RATE_LIMIT_PER_MINUTE), 60).allowed:
        return CLOSE_RATE_LIMITED, None
    raw_key = _header(scope, API_KEY_HEADER)
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    token = (query.get("token") or [""])[0]
    if raw_key:
        key = BillingAPIKey.authenticate_raw(raw_key)
    elif token:
        grant = read_ws_token(token)
        if grant is None or grant.queue_id != queue_id:
            return CLOSE_UNAUTHENTICATED, None
        key = (
            BillingAPIKey.objects.select_related("tenant")
            .filter(pk=grant.api_key_id, tenant_id=grant.tenant_id)
            .first()
        )
    else:
        return CLOSE_UNAUTHENTICATED, None
    if key is None:
        return CLOSE_UNAUTHENTICATED, None
    # The key model's own rule, as the HTTP API asks it; the IP allow-list only for the header.
    problem = key.usability_error(ip=ip if raw_key else None)
    if problem == "ip_not_allowed":
        logger.info("billing ws: ip not allowed", extra={"client_ip": ip, "api_key_id": str(key.pk)})
        return CLOSE_FORBIDDEN, None
    if problem is not None:
        return CLOSE_UNAUTHENTICATED, None
    snapshot = queue_snapshot(queue_id, tenant_id=key.tenant_id)
    if snapshot is None:
        return CLOSE_NOT_FOUND, None
    return 0, snapshot
