"""WAHA's words for chats, message ids and receipts, and its chat history: pure functions.

- Chat ids are `<E.164 digits>@c.us` (contract §6; never `@s.whatsapp.net`).
- A message id is serialized `<fromMe>_<chatId>_<id>` (`true_5511…@c.us_3EB0…`) in webhooks and
  in the chat history, while a NOWEB send answers Baileys' `key.id` (`3EB0…`) and a WEBJS send
  `{"id": {"_serialized": …}}`. We keep the short id, the last part, which every one of them
  carries and which a customer's quoted reply names: `message_key()` reduces any of the shapes.
- Receipts are `ack` −1…4 (`WAMessageAck`): mapped to Evolution's status words, so one
  delivery-status service handles both providers.
- The chat history: `GET /api/{session}/chats/{chatId}/messages?limit&offset&downloadMedia=false
  &filter.fromMe=true&filter.timestamp.gte&filter.timestamp.lte` (Unix seconds), newest first,
  a bare list of messages `{id, timestamp, from, fromMe, to, body, ack, ackName}`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .evolution_lookup import ProviderMessage, jid_candidates

CHAT_SUFFIX = "@c.us"
# WAMessageAck (enums.dto.ts) → the status words of Evolution's renderStatus.ts.
ACK_STATUS = {-1: "ERROR", 0: "PENDING", 1: "SERVER_ACK", 2: "DELIVERY_ACK", 3: "READ", 4: "PLAYED"}


def chat_id(digits: str) -> str:
    return f"{digits}{CHAT_SUFFIX}"


def chat_id_candidates(digits: str) -> list[str]:
    """The chats a send to `digits` may live in (a Brazilian mobile with or without its ninth
    digit, as WhatsApp registered it)."""
    return [jid.split("@", 1)[0] + CHAT_SUFFIX for jid in jid_candidates(digits)]


def message_key(raw: Any) -> str:
    """The short message id out of any of WAHA's shapes (see the module docstring)."""
    if isinstance(raw, dict):
        raw = raw.get("_serialized") or raw.get("id") or ""
    text = str(raw or "")
    return text.rsplit("_", 1)[-1] if "_" in text else text


def sent_message_id(body: Any) -> str:
    """The id of a message `POST /api/sendText` answered: NOWEB `key.id`, WEBJS `id`."""
    if not isinstance(body, dict):
        return ""
    key = body.get("key")
    if isinstance(key, dict) and key.get("id"):
        return str(key["id"])
    return message_key(body.get("id"))


def ack_status(raw: Any) -> str:
    """`ack` (−1…4) or `ackName` → `ERROR`, `SERVER_ACK`, `DELIVERY_ACK`, `READ`, `PLAYED`…; `""`
    when unknown."""
    if isinstance(raw, bool):
        return ""
    try:
        return ACK_STATUS.get(int(raw), "")
    except (TypeError, ValueError):
        return {
            "SERVER": "SERVER_ACK",
            "DEVICE": "DELIVERY_ACK",
            "READ": "READ",
            "PLAYED": "PLAYED",
            "ERROR": "ERROR",
            "PENDING": "PENDING",
        }.get(str(raw or "").upper(), "")


def chat_messages_query(
    *, from_me: bool, sent_after: datetime | None, sent_before: datetime | None, limit: int, offset: int
) -> dict[str, str]:
    query = {"limit": str(limit), "offset": str(offset), "downloadMedia": "false"}
    if from_me:
        query["filter.fromMe"] = "true"
    if sent_after is not None and sent_before is not None:
        query["filter.timestamp.gte"] = str(int(sent_after.timestamp()))
        query["filter.timestamp.lte"] = str(int(sent_before.timestamp()))
    return query


def _timestamp(value: Any) -> datetime | None:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    if seconds > 10**11:  # milliseconds
        seconds //= 1000
    return datetime.fromtimestamp(seconds, tz=UTC)


def parse_message(record: Any) -> ProviderMessage | None:
    if not isinstance(record, dict):
        return None
    key = message_key(record.get("id"))
    if not key:
        return None
    from_me = record.get("fromMe") is True
    return ProviderMessage(
        provider_message_id=key,
        remote_jid=str((record.get("to") if from_me else record.get("from")) or ""),
        from_me=from_me,
        text=str(record.get("body") or ""),
        timestamp=_timestamp(record.get("timestamp")),
        status=ack_status(record.get("ack")) or None,
    )


def parse_chat_messages(body: Any) -> list[ProviderMessage]:
    """The messages of one answer; ValueError when it is not a list."""
    if not isinstance(body, list):
        raise ValueError("not a chat messages answer")
    return [message for message in (parse_message(record) for record in body) if message is not None]
