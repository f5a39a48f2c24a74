"""Bodies and envelopes of the Evolution API, as the real server builds them.

Pure functions (no I/O, no state): every status code, envelope and field name the sandbox
sends is built here, so the contract test can pin this module to
docs/evolution-api-contract.md (section numbers in the docstrings).
"""

from __future__ import annotations

import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

V2_VERSION = "2.3.7"
V1_VERSION = "1.8.2"
WELCOME_MESSAGE = "Welcome to the Evolution API, it is working!"
CLIENT_NAME = "evolution_sandbox"
INTEGRATION = "WHATSAPP-BAILEYS"

STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# §4: configuration names (UPPER_SNAKE) of the webhook events the real server accepts.
WEBHOOK_EVENTS = [
    "APPLICATION_STARTUP",
    "QRCODE_UPDATED",
    "MESSAGES_SET",
    "MESSAGES_UPSERT",
    "MESSAGES_EDITED",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "SEND_MESSAGE",
    "SEND_MESSAGE_UPDATE",
    "CONTACTS_SET",
    "CONTACTS_UPSERT",
    "CONTACTS_UPDATE",
    "PRESENCE_UPDATE",
    "CHATS_SET",
    "CHATS_UPSERT",
    "CHATS_UPDATE",
    "CHATS_DELETE",
    "GROUPS_UPSERT",
    "GROUP_UPDATE",
    "GROUP_PARTICIPANTS_UPDATE",
    "CONNECTION_UPDATE",
    "LABELS_EDIT",
    "LABELS_ASSOCIATION",
    "CALL",
    "TYPEBOT_START",
    "TYPEBOT_CHANGE_STATUS",
    "STATUS_INSTANCE",
    "LOGOUT_INSTANCE",
    "REMOVE_INSTANCE",
]

ACK_STATUSES = ("SERVER_ACK", "DELIVERY_ACK", "READ")
# Closing a connection in Baileys (DisconnectReason.connectionClosed).
CLOSE_STATUS_REASON = 428


# ----------------------------------------------------------------------------- §1.5 errors
def error_body(status: int, message: Any) -> dict[str, Any]:
    """`{"status", "error", "response": {"message"}}` (src/main.ts error handler)."""
    return {"status": status, "error": STATUS_TEXT.get(status, "Error"), "response": {"message": message}}


def unauthorized() -> tuple[int, dict[str, Any]]:
    return 401, error_body(401, "Unauthorized")


def instance_not_found(name: str) -> tuple[int, dict[str, Any]]:
    return 404, error_body(404, [f'The "{name}" instance does not exist'])


def route_not_found(method: str, path: str) -> tuple[int, dict[str, Any]]:
    return 404, error_body(404, [f"Cannot {method} {path}"])


def schema_error(*messages: str) -> tuple[int, dict[str, Any]]:
    """JSON-schema violations: a nested array, e.g. `[["instance requires property \\"text\\""]]`."""
    return 400, error_body(400, [list(messages)])


def bad_request(*arguments: Any) -> tuple[int, dict[str, Any]]:
    """`BadRequestException(...args)`: `message` is the array of the arguments."""
    return 400, error_body(400, list(arguments))


def not_on_whatsapp(jid: str, number: str) -> tuple[int, dict[str, Any]]:
    return 400, error_body(400, [{"jid": jid, "exists": False, "number": number}])


def connection_closed() -> tuple[int, dict[str, Any]]:
    """A send on a closed socket that fails in the `onWhatsApp` lookup (issue #1286)."""
    return 500, error_body(500, "Connection Closed")


def instance_not_loaded() -> tuple[int, dict[str, Any]]:
    """In the DB but not in memory: `waMonitor.waInstances[name]` is undefined (UNCONFIRMED)."""
    return 500, error_body(500, ["TypeError: Cannot read properties of undefined (reading 'textMessage')"])


def rate_limited() -> tuple[int, dict[str, Any]]:
    """Evolution has no limiter (§5): a 429 comes from a proxy in front of it."""
    return 429, error_body(429, ["Too Many Requests"])


def ambiguous_failure() -> tuple[int, dict[str, Any]]:
    """Issue #1247: the message went out, then saving it failed, and the API answered 400."""
    return bad_request("PrismaClientKnownRequestError: Invalid `this.prismaRepository.message.create()` invocation")


# ----------------------------------------------------------------------------- §1.3 numbers
_SPECIAL_SUFFIXES = ("@s.whatsapp.net", "@g.us", "@lid", "@broadcast")


def create_jid(number: str) -> str:
    """`createJid()` without the BR/MX/AR variant lookup: the sandbox's directory holds the
    number as sent, so `remoteJid` is always `<digits>@s.whatsapp.net`."""
    if any(suffix in number for suffix in _SPECIAL_SUFFIXES):
        return re.sub(r":\d+(?=@)", "", number)
    text = re.sub(r"[\s+()]", "", number)
    text = re.split(r"[:@]", text)[0]
    if "-" in text and len(text) >= 24:
        return re.sub(r"[^\d-]", "", text) + "@g.us"
    digits = re.sub(r"\D", "", text)
    if len(digits) >= 18:
        return digits + "@g.us"
    return digits + "@s.whatsapp.net"


def number_digits(number: str) -> str:
    return create_jid(number).split("@")[0]


def new_pairing_code() -> str:
    """What a WhatsApp Web QR carries (`2@…`): random, unique per QR."""
    return "2@" + secrets.token_urlsafe(24)


def new_message_id(v1: bool = False) -> str:
    """Baileys-style ids: `3EB0` + hex (v2 web client), `BAE5` + hex (v1)."""
    return ("BAE5" + secrets.token_hex(6) if v1 else "3EB0" + secrets.token_hex(8)).upper()


# ----------------------------------------------------------------------------- §1.4 / §2 success
def send_response_v2(*, message_id: str, jid: str, text: str, timestamp: int, instance_id: str) -> dict[str, Any]:
    return {
        "key": {"remoteJid": jid, "fromMe": True, "id": message_id},
        "pushName": "Você",
        "status": "PENDING",
        "message": {"conversation": text},
        "contextInfo": None,
        "messageType": "conversation",
        "messageTimestamp": timestamp,
        "instanceId": instance_id,
        "source": "web",
    }


def send_response_v1(*, message_id: str, jid: str, text: str, timestamp: int) -> dict[str, Any]:
    return {
        "key": {"remoteJid": jid, "fromMe": True, "id": message_id},
        "message": {"extendedTextMessage": {"text": text}},
        "messageTimestamp": str(timestamp),
        "status": "PENDING",
    }


# ----------------------------------------------------------------------------- §3 health
def welcome(version: str) -> dict[str, Any]:
    return {
        "status": 200,
        "message": WELCOME_MESSAGE,
        "version": version,
        "clientName": CLIENT_NAME,
        "manager": None,
        "documentation": "https://doc.evolution-api.com",
    }


def connection_state(name: str, state: str | None) -> dict[str, Any]:
    """`state` is omitted when the instance is not loaded (the `?.` in the controller)."""
    inner: dict[str, Any] = {"instanceName": name}
    if state is not None:
        inner["state"] = state
    return {"instance": inner}


def fetch_instance_row(instance: dict[str, Any], *, message_count: int) -> dict[str, Any]:
    """One Prisma `Instance` row of `GET /instance/fetchInstances` (v2)."""
    return {
        "id": instance["id"],
        "name": instance["name"],
        "connectionStatus": evolution_state(instance["state"]),
        "ownerJid": f"{instance['owner_number']}@s.whatsapp.net",
        "profileName": instance["profile_name"],
        "profilePicUrl": None,
        "integration": INTEGRATION,
        "number": None,
        "businessId": None,
        "token": instance["token"],
        "clientName": CLIENT_NAME,
        "disconnectionReasonCode": None if instance["state"] == "open" else CLOSE_STATUS_REASON,
        "disconnectionObject": None,
        "disconnectionAt": None,
        "createdAt": instance["created_at"],
        "updatedAt": instance["updated_at"],
        "Chatwoot": None,
        "Proxy": None,
        "Rabbitmq": None,
        "Nats": None,
        "Sqs": None,
        "Websocket": None,
        "Setting": None,
        "_count": {"Message": message_count, "Contact": 0, "Chat": 0},
    }


# ----------------------------------------------------------------------------- pairing
def qr_code_answer(*, code: str, image: str, count: int) -> dict[str, Any]:
    """`GET /instance/connect/{instance}` while not connected: the Baileys `qrCode` object."""
    return {"pairingCode": None, "code": code, "base64": image, "count": count}


def create_instance_answer(
    *, name: str, instance_id: str, token: str, webhook: dict[str, Any] | None, qrcode: dict[str, Any] | None
) -> dict[str, Any]:
    """`POST /instance/create` → 201 (`createInstance()` of instance.controller.ts)."""
    return {
        "instance": {
            "instanceName": name,
            "instanceId": instance_id,
            "integration": INTEGRATION,
            "webhookWaBusiness": None,
            "accessTokenWaBusiness": "",
            "status": "created",
        },
        "hash": token,
        "webhook": {
            "webhookUrl": (webhook or {}).get("url"),
            "webhookByEvents": (webhook or {}).get("byEvents"),
            "webhookBase64": (webhook or {}).get("base64"),
        },
        "settings": {
            "rejectCall": False,
            "msgCall": "",
            "groupsIgnore": False,
            "alwaysOnline": False,
            "readMessages": False,
            "readStatus": False,
            "syncFullHistory": False,
        },
        "qrcode": qrcode,
    }


def name_in_use(name: str) -> tuple[int, dict[str, Any]]:
    return 403, error_body(403, [f'This name "{name}" is already in use.'])


def not_connected(name: str) -> tuple[int, dict[str, Any]]:
    """restart / logout of an instance whose state is `close`."""
    return bad_request(f'The "{name}" instance is not connected')


def logout_answer() -> dict[str, Any]:
    return {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}


# ----------------------------------------------------------------------------- findMessages
@dataclass(frozen=True)
class FindMessagesQuery:
    remote_jid: str | None
    message_id: str | None
    since: int | None  # Unix seconds; both bounds or neither (the real server ignores one alone)
    until: int | None
    page: int
    page_size: int


def _unix_seconds(value: Any) -> int | None:
    """`Math.floor(new Date(value).getTime() / 1000)` for the ISO strings and epoch-ms numbers we send."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value // 1000)
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None
    return None


def parse_find_messages_query(body: Any) -> FindMessagesQuery | str:
    """The query of `POST /chat/findMessages/{instance}`, or the schema error to answer."""
    if not isinstance(body, dict):
        return "instance is not of a type(s) object"
    where = body.get("where") or {}
    if not isinstance(where, dict):
        return "where is not of a type(s) object"
    key = where.get("key") or {}
    if not isinstance(key, dict):
        return "where.key is not of a type(s) object"
    page, page_size = body.get("page") or 1, body.get("offset") or 50
    if (
        isinstance(page, bool)
        or not isinstance(page, int)
        or isinstance(page_size, bool)
        or not isinstance(page_size, int)
    ):
        return "page and offset must be integers"
    bounds = where.get("messageTimestamp") or {}
    since = _unix_seconds(bounds.get("gte")) if isinstance(bounds, dict) else None
    until = _unix_seconds(bounds.get("lte")) if isinstance(bounds, dict) else None
    both = since is not None and until is not None
    return FindMessagesQuery(
        remote_jid=key.get("remoteJid") or None,
        message_id=key.get("id") or None,
        since=since if both else None,
        until=until if both else None,
        page=max(1, page),
        page_size=max(1, page_size),
    )


def find_messages_page(records: list[dict[str, Any]], *, page: int, page_size: int, instance_id: str) -> dict[str, Any]:
    """`{"messages": {total, pages, currentPage, records}}` with Prisma `Message` rows, newest first."""
    chunk = records[(page - 1) * page_size : page * page_size]
    rows = []
    for record in chunk:
        reached = ACK_STATUSES[: ACK_STATUSES.index(record["status"]) + 1] if record["status"] in ACK_STATUSES else []
        rows.append(
            {
                "id": record["db_id"],
                "key": {"remoteJid": record["remote_jid"], "fromMe": True, "id": record["id"]},
                "pushName": "Você",
                "messageType": "conversation",
                "message": {"conversation": record["text"]},
                "messageTimestamp": record["timestamp"],
                "instanceId": instance_id,
                "source": "web",
                "contextInfo": None,
                "MessageUpdate": [{"status": status} for status in reached],
            }
        )
    return {
        "messages": {
            "total": len(records),
            "pages": math.ceil(len(records) / page_size),
            "currentPage": page,
            "records": rows,
        }
    }


# ----------------------------------------------------------------------------- §4 webhooks
def event_config_name(event: str) -> str:
    """`messages.update` → `MESSAGES_UPDATE` (the name used in the `events` list)."""
    return re.sub(r"[.-]", "_", event).upper()


def event_path_suffix(event: str) -> str:
    """`messages.update` → `messages-update` (appended to the URL when `byEvents` is on)."""
    return event_config_name(event).replace("_", "-").lower()


def evolution_date_time(now: datetime | None = None) -> str:
    """Server-local time with a misleading `Z`, as the real server sends it."""
    local = now or datetime.now()
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}Z"


def webhook_envelope(
    *,
    event: str,
    instance: str,
    data: dict[str, Any],
    destination: str,
    sender: str,
    server_url: str,
    apikey: str | None,
    v1: bool = False,
) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "event": event,
        "instance": instance,
        "data": data,
        "destination": destination,
        "date_time": evolution_date_time(),
        "sender": sender,
        "server_url": server_url,
    }
    if not v1 or apikey is not None:  # v1 only adds the key when exposure is on
        envelope["apikey"] = apikey
    return envelope


def messages_update_data_v2(*, message_id: str, jid: str, status: str, instance_id: str, db_id: str) -> dict[str, Any]:
    return {
        "keyId": message_id,
        "remoteJid": jid,
        "fromMe": True,
        "participant": None,
        "status": status,
        "instanceId": instance_id,
        "messageId": db_id,
    }


def messages_update_data_v1(*, message_id: str, jid: str, status: str, owner: str) -> dict[str, Any]:
    return {
        "remoteJid": jid,
        "fromMe": True,
        "id": message_id,
        "status": status,
        "datetime": int(time.time() * 1000),
        "owner": owner,
        "pollUpdates": None,
    }


def messages_upsert_data(
    *,
    message_id: str,
    jid: str,
    text: str,
    push_name: str,
    instance_id: str,
    owner: str,
    quoted_id: str | None = None,
    v1: bool = False,
) -> dict[str, Any]:
    timestamp = int(time.time())
    if v1:
        return {
            "key": {"remoteJid": jid, "fromMe": False, "id": message_id},
            "pushName": push_name,
            "message": {"extendedTextMessage": {"text": text}},
            "messageTimestamp": timestamp,
            "owner": owner,
            "source": "android",
        }
    context = {"stanzaId": quoted_id, "participant": None, "quotedMessage": {"conversation": ""}} if quoted_id else None
    return {
        "key": {"remoteJid": jid, "fromMe": False, "id": message_id},
        "pushName": push_name,
        "status": "DELIVERY_ACK",
        "message": {"conversation": text},
        "contextInfo": context,
        "messageType": "conversation",
        "messageTimestamp": timestamp,
        "instanceId": instance_id,
        "source": "android",
    }


# Baileys DisconnectReason.loggedOut: the phone (or `DELETE /instance/logout`) ended the session.
LOGGED_OUT_STATUS_REASON = 401


def evolution_state(state: str) -> str:
    """The sandbox's neutral state in Evolution's words (waiting for a QR scan is `connecting`)."""
    return "connecting" if state == "qr" else state


def connection_update_data(
    *, name: str, state: str, owner_number: str, profile_name: str, logged_out: bool = False
) -> dict[str, Any]:
    reason = 200 if state == "open" else LOGGED_OUT_STATUS_REASON if logged_out else CLOSE_STATUS_REASON
    data: dict[str, Any] = {"instance": name, "state": evolution_state(state), "statusReason": reason}
    if state == "open":
        data.update(wuid=f"{owner_number}@s.whatsapp.net", profileName=profile_name, profilePictureUrl=None)
    return data


def webhook_row(*, webhook: dict[str, Any], instance_id: str) -> dict[str, Any]:
    """The Prisma `Webhook` row that `/webhook/set` and `/webhook/find` return."""
    return {
        "id": webhook["id"],
        "url": webhook["url"],
        "headers": webhook["headers"],
        "enabled": webhook["enabled"],
        "events": webhook["events"],
        "webhookByEvents": webhook["byEvents"],
        "webhookBase64": webhook["base64"],
        "createdAt": webhook["created_at"],
        "updatedAt": webhook["updated_at"],
        "instanceId": instance_id,
    }
