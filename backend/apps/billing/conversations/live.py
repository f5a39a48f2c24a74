"""Live updates of the staff inbox: "conversation X changed", pushed to the tenant's group.

The push carries ids only; the page then fetches the server-rendered fragment it shows, so no
text travels through the channel layer and everything on screen is escaped by Django's
templates. Pushes reuse the progress pushes' process-wide loop and Redis connections
(`progress._group_send`), are best effort (logged, never raised) and happen after the commit
of the change they announce.

Browsers authenticate the socket with a short-lived signed token that the (session-authenticated)
inbox page hands them, as the progress page does: never with the session cookie.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing

from apps.billing.progress import _group_send

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "inbox.update"  # InboxConsumer.inbox_update
TOKEN_SALT = "billing.inbox"


def group_name(tenant_id: Any) -> str:
    return f"billing.inbox.{tenant_id}"


def publish_conversation_update(*, tenant_id: Any, conversation_id: int) -> bool:
    try:
        _group_send(group_name(tenant_id), {"type": MESSAGE_TYPE, "conversation_id": conversation_id})
    except Exception as exc:
        logger.warning(
            "billing inbox update not published",
            extra={"tenant_id": str(tenant_id), "conversation_id": conversation_id, "error": type(exc).__name__},
        )
        return False
    return True


@dataclass(frozen=True)
class InboxGrant:
    tenant_id: str
    user_id: int


def issue_inbox_token(*, tenant_id: Any, user_id: int) -> str:
    return signing.dumps({"t": str(tenant_id), "u": int(user_id)}, salt=TOKEN_SALT)


def read_inbox_token(token: str) -> InboxGrant | None:
    if not token or len(token) > 500:
        return None
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=int(settings.BILLING_WS_TOKEN_MAX_AGE))
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("t"), str) or not isinstance(data.get("u"), int):
        return None
    return InboxGrant(data["t"], data["u"])
