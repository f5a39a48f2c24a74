"""Bodies and envelopes of WAHA (shared evolution-api-contract.md §6), as a NOWEB server builds
them: pure functions, no I/O, no state, so the contract tests pin them in one place.

- Errors are NestJS exceptions: `{"statusCode", "message", "error"}`; a session that is not
  `WORKING` when a call needs it is 422 with WAHA's own body (`waitUntilStatus()`).
- A message id is `<fromMe>_<chatId>_<id>`; a NOWEB send answers Baileys' message (`key.id`).
- Webhooks: `{id, timestamp (ms), event, session, metadata, me, payload, engine, environment}`,
  with `X-Webhook-Request-Id`, `X-Webhook-Timestamp` and, when the hook has an HMAC key,
  `X-Webhook-Hmac` (hex HMAC-SHA512 of the body) and `X-Webhook-Hmac-Algorithm: sha512`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from .contract import STATUS_TEXT

VERSION = "2025.9.1"
ENGINE = "NOWEB"
# The sandbox's neutral state → WAHASessionStatus.
SESSION_STATUS = {
    "open": "WORKING",
    "connecting": "STARTING",
    "close": "STOPPED",
    "refused": "FAILED",
    "qr": "SCAN_QR_CODE",
}
WORKING = "WORKING"
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
# The sandbox's receipts (events.py) in WAHA's numbers.
ACK_OF_STATUS = {"SERVER_ACK": 1, "DELIVERY_ACK": 2, "READ": 3, "ERROR": -1}
EVENTS = (
    "message",
    "message.any",
    "message.ack",
    "message.reaction",
    "message.revoked",
    "message.waiting",
    "session.status",
    "state.change",
    "presence.update",
    "poll.vote",
    "call.received",
)
NO_RETRY_STATUSES: frozenset[int] = frozenset()  # WAHA retries any failed delivery, per its hook's policy


def error(status: int, message: Any) -> tuple[int, dict[str, Any]]:
    return status, {"statusCode": status, "message": message, "error": STATUS_TEXT.get(status, "Error")}


def unauthorized() -> tuple[int, dict[str, Any]]:
    return 401, {"statusCode": 401, "message": "Unauthorized"}


def session_not_found() -> tuple[int, dict[str, Any]]:
    return error(404, "Session not found")


def not_working(name: str, status: str) -> tuple[int, dict[str, Any]]:
    return 422, {
        "error": "Session status is not as expected. Try again later or restart the session",
        "session": name,
        "status": status,
        "expected": [WORKING],
    }


def validation_error(*messages: str) -> tuple[int, dict[str, Any]]:
    return error(400, list(messages))


def chat_id(digits: str) -> str:
    return f"{digits}@c.us"


def serialized_id(*, from_me: bool, chat: str, message_id: str) -> str:
    return f"{'true' if from_me else 'false'}_{chat}_{message_id}"


def me(owner_number: str, profile_name: str) -> dict[str, Any]:
    return {"id": chat_id(owner_number), "pushName": profile_name}


def session_info(
    *, name: str, state: str, config: dict[str, Any], owner_number: str, profile_name: str
) -> dict[str, Any]:
    status = SESSION_STATUS[state]
    return {
        "name": name,
        "status": status,
        "config": config,
        "me": me(owner_number, profile_name) if status == WORKING else None,
        "engine": {"engine": ENGINE},
    }


def send_response(*, message_id: str, digits: str, text: str, timestamp: int) -> dict[str, Any]:
    """NOWEB's `sock.sendMessage` result (Baileys' WAMessage)."""
    return {
        "key": {"remoteJid": f"{digits}@s.whatsapp.net", "fromMe": True, "id": message_id},
        "message": {"extendedTextMessage": {"text": text}},
        "messageTimestamp": str(timestamp),
        "status": "PENDING",
    }


def check_exists(digits: str, exists: bool) -> dict[str, Any]:
    return {"numberExists": exists, "chatId": chat_id(digits) if exists else None}


def qr_answer(png_base64: str) -> dict[str, Any]:
    """`GET /api/{session}/auth/qr` with `Accept: application/json` (a `Base64File`)."""
    return {"mimetype": "image/png", "data": png_base64}


def qr_not_available(status: str) -> tuple[int, dict[str, Any]]:
    return error(422, f"Can get QR code only in SCAN_QR_CODE status. The current status is '{status}'")


def session_exists(name: str) -> tuple[int, dict[str, Any]]:
    return error(422, f"Session '{name}' already exists. Use PUT to update it.")


def outgoing_message(*, record: dict[str, Any], owner_number: str, ack: int) -> dict[str, Any]:
    """One of our messages as `message.any` and the chat history show it."""
    chat = record["remote_jid"]
    return {
        "id": serialized_id(from_me=True, chat=chat, message_id=record["id"]),
        "timestamp": record["timestamp"],
        "from": chat_id(owner_number),
        "fromMe": True,
        "source": "api",
        "to": chat,
        "body": record["text"],
        "hasMedia": False,
        "ack": ack,
        "ackName": ACK_NAMES.get(ack, "PENDING"),
    }


def incoming_message(
    *, message_id: str, digits: str, text: str, owner_number: str, push_name: str, quoted_id: str | None
) -> dict[str, Any]:
    chat = chat_id(digits)
    return {
        "id": serialized_id(from_me=False, chat=chat, message_id=message_id),
        "timestamp": int(time.time()),
        "from": chat,
        "fromMe": False,
        "source": "app",
        "to": chat_id(owner_number),
        "body": text,
        "hasMedia": False,
        "ack": 2,
        "ackName": "DEVICE",
        "replyTo": {"id": quoted_id, "participant": None, "body": None} if quoted_id else None,
        "_data": {"notifyName": push_name},
    }


def ack_payload(*, record: dict[str, Any], owner_number: str, ack: int) -> dict[str, Any]:
    chat = record["remote_jid"]
    return {
        "id": serialized_id(from_me=True, chat=chat, message_id=record["id"]),
        "from": chat,
        "participant": None,
        "fromMe": True,
        "ack": ack,
        "ackName": ACK_NAMES.get(ack, "PENDING"),
    }


def session_status_payload(name: str, state: str) -> dict[str, Any]:
    return {"name": name, "status": SESSION_STATUS[state]}


def envelope(
    *, event: str, session: str, payload: dict[str, Any], owner_number: str, profile_name: str
) -> dict[str, Any]:
    return {
        "id": "evt_" + secrets.token_hex(13),
        "timestamp": int(time.time() * 1000),
        "event": event,
        "session": session,
        "metadata": {},
        "me": me(owner_number, profile_name),
        "payload": payload,
        "engine": ENGINE,
        "environment": {"version": VERSION, "engine": ENGINE, "tier": "CORE", "browser": None},
    }


def webhook_headers(*, body: bytes, hmac_key: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Request-Id": "req_" + secrets.token_hex(13),
        "X-Webhook-Timestamp": str(int(time.time() * 1000)),
    }
    if hmac_key:
        headers["X-Webhook-Hmac"] = hmac.new(hmac_key.encode(), body, hashlib.sha512).hexdigest()
        headers["X-Webhook-Hmac-Algorithm"] = "sha512"
    return headers
