"""Asking the provider which messages it holds for a chat: `POST /chat/findMessages/{instance}`.

Pure functions (no I/O): the request body, the JID candidates for a phone, and the parsed
answer. Read from Evolution v2's source (`fetchMessages` in the channel service, 2.3.x):

- body: `{"where": {"key": {"remoteJid", "fromMe", "id"}, "messageTimestamp": {"gte", "lte"}},
  "page": 1, "offset": 50}`. `offset` is the page size (default 50), `page` is 1-based.
  A key filter whose value is falsy is ignored (`fromMe: false` filters nothing), and the
  timestamp filter applies only when both `gte` and `lte` are given (dates `new Date()` parses;
  compared with the stored Unix seconds).
- answer (200): `{"messages": {"total", "pages", "currentPage", "records": [{"id", "key":
  {"remoteJid", "fromMe", "id"}, "pushName", "messageType", "message", "messageTimestamp",
  "instanceId", "source", "contextInfo", "MessageUpdate": [{"status"}]}]}}`, newest first.
- Evolution answers from its database: with `DATABASE_SAVE_DATA_NEW_MESSAGE` off it holds
  nothing, and an empty answer proves nothing (docs/providers.md, "Reconciliation").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

JID_SUFFIX = "@s.whatsapp.net"


@dataclass(frozen=True)
class ProviderMessage:
    """One message the provider holds (ours when `from_me`)."""

    provider_message_id: str  # key.id: what sendText answered and receipts carry
    remote_jid: str
    from_me: bool
    text: str
    timestamp: datetime | None
    status: str | None  # the last receipt the provider recorded (SERVER_ACK, DELIVERY_ACK, READ...)


@dataclass(frozen=True)
class MessageLookup:
    messages: list[ProviderMessage]
    total: int  # how many records the provider counted for the filter
    complete: bool  # every matching record was read (no page left unread)


def jid_candidates(digits: str) -> list[str]:
    """The JIDs a send to `digits` (E.164 without '+') may be stored under. Evolution rewrites
    Brazilian mobiles `55 DD 9 XXXXXXXX` without the extra 9 when DDD ≥ 31 and the subscriber's
    first digit is ≥ 7, then asks WhatsApp which variant exists (contract §1.3): both are asked."""
    candidates = [digits + JID_SUFFIX]
    if len(digits) == 13 and digits.startswith("55") and digits[4] == "9":
        candidates.append(digits[:4] + digits[5:] + JID_SUFFIX)
    elif len(digits) == 12 and digits.startswith("55") and digits[4] in "6789":
        candidates.append(digits[:4] + "9" + digits[4:] + JID_SUFFIX)
    return candidates


def find_messages_body(
    *,
    remote_jid: str,
    from_me: bool,
    sent_after: datetime | None,
    sent_before: datetime | None,
    page: int,
    page_size: int,
) -> dict[str, Any]:
    key: dict[str, Any] = {"remoteJid": remote_jid}
    if from_me:
        key["fromMe"] = True
    where: dict[str, Any] = {"key": key}
    if sent_after is not None and sent_before is not None:
        where["messageTimestamp"] = {"gte": _iso(sent_after), "lte": _iso(sent_before)}
    return {"where": where, "page": page, "offset": page_size}


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_text(message: Any) -> str:
    """`message.conversation` (v2 folds extended text into it), else the extended text (v1)."""
    if not isinstance(message, dict):
        return ""
    text = message.get("conversation")
    if not text:
        extended = message.get("extendedTextMessage")
        text = extended.get("text") if isinstance(extended, dict) else None
    return str(text or "")


def _timestamp(value: Any) -> datetime | None:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def _status(record: dict[str, Any]) -> str | None:
    updates = record.get("MessageUpdate")
    if isinstance(updates, list) and updates:
        last = updates[-1]
        if isinstance(last, dict) and last.get("status"):
            return str(last["status"])
    return str(record["status"]) if record.get("status") else None


def parse_record(record: Any) -> ProviderMessage | None:
    """A typed message, or None for a record without a key id (nothing to match on)."""
    if not isinstance(record, dict) or not isinstance(record.get("key"), dict):
        return None
    key = record["key"]
    if not key.get("id"):
        return None
    return ProviderMessage(
        provider_message_id=str(key["id"]),
        remote_jid=str(key.get("remoteJid") or ""),
        from_me=key.get("fromMe") is True,
        text=message_text(record.get("message")),
        timestamp=_timestamp(record.get("messageTimestamp")),
        status=_status(record),
    )


def parse_find_messages(body: Any) -> tuple[list[ProviderMessage], int, int]:
    """(messages, total, pages) of one answer. Raises ValueError when the shape is not the
    v2 one (or a bare list, as 1.8 answered)."""
    if isinstance(body, list):
        records, total, pages = body, len(body), 1
    elif (
        isinstance(body, dict)
        and isinstance(body.get("messages"), dict)
        and isinstance(body["messages"].get("records"), list)
    ):
        page = body["messages"]
        records = page["records"]
        total = int(page.get("total") or len(records))
        pages = int(page.get("pages") or 1)
    else:
        raise ValueError("not a findMessages answer")
    messages = [message for message in (parse_record(record) for record in records) if message is not None]
    return messages, total, pages
