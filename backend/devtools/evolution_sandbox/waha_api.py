"""The WAHA routes (`/api/...`, contract §6), for sandbox instances created with
`provider: "waha"` (a session each; an Evolution-mode instance does not exist here).

WAHA checks the key first, for every route (`X-Api-Key`: the server key, which is the sandbox's
global key, or the session's own token, which stands for a per-server key in tests), then finds
the session (404 `Session not found`), then its status (422 when a call needs `WORKING`). The
same fault switches as the Evolution routes apply: latency, 429 + Retry-After, forced failures,
hangs, drips, and an ambiguous answer (a 500 after the message went out). Every request is
recorded, with the session as its instance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from . import contract, waha_contract
from .http_handler import BodyError, Request, Response
from .pairing import qr_png_base64
from .state import OptionError, SandboxInstance

if TYPE_CHECKING:
    from .app import SandboxApp


def _reply(status_and_body: tuple[int, Any], headers: dict[str, str] | None = None) -> Response:
    status, body = status_and_body
    return Response(status, body, headers or {})


def _auth_kind(app: SandboxApp, request: Request, instance: SandboxInstance | None) -> str:
    return app.state.key_kind(request.header("x-api-key") or request.param("x-api-key"), instance)


def _status(instance: SandboxInstance) -> str:
    return waha_contract.SESSION_STATUS[instance.state]


def _info(instance: SandboxInstance) -> dict[str, Any]:
    return waha_contract.session_info(
        name=instance.name,
        state=instance.state,
        config=instance.session_config,
        owner_number=instance.owner_number,
        profile_name=instance.profile_name,
    )


def _move(app: SandboxApp, instance: SandboxInstance, state: str, *, logged_out: bool = False) -> SandboxInstance:
    moved = app.state.set_state(instance.name, state, logged_out=logged_out)
    if moved is None:
        return instance
    app.events.state_changed(moved[0], moved[1], logged_out=logged_out)
    return moved[0]


def _body(request: Request) -> dict[str, Any] | Response:
    try:
        body = request.json()
    except BodyError:
        return _reply(waha_contract.validation_error("Unexpected token in JSON body"))
    if not isinstance(body, dict):
        return _reply(waha_contract.validation_error("the body must be a JSON object"))
    return body


# ----------------------------------------------------------------------------- messages
def send_text(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`POST /api/sendText {session, chatId, text}` → 201 with NOWEB's message."""
    faults = app.state.take_pre_send_faults(instance.name)
    app.sleep(faults.latency)
    if faults.retry_after is not None:
        return _reply(
            waha_contract.error(429, "Too Many Requests"), {"Retry-After": str(int(math.ceil(faults.retry_after)))}
        )
    if faults.failure is not None:
        status, message = faults.failure
        return _reply(waha_contract.error(status, message if isinstance(message, str) else "Internal server error"))
    body = _body(request)
    if isinstance(body, Response):
        return body
    problems = [f"{name} must be a string" for name in ("chatId", "text") if not isinstance(body.get(name), str)]
    if problems:
        return _reply(waha_contract.validation_error(*problems))
    if _status(instance) != waha_contract.WORKING:
        return _reply(waha_contract.not_working(instance.name, _status(instance)))
    digits = contract.number_digits(body["chatId"])
    record = app.state.record_message(instance, number=digits, jid=waha_contract.chat_id(digits), text=body["text"])
    payload = waha_contract.send_response(
        message_id=record["id"], digits=digits, text=body["text"], timestamp=record["timestamp"]
    )
    # WAHA sends to any chat id; WhatsApp refuses a number it does not have (an ERROR receipt).
    app.events.message_sent(instance, record, payload, refused=not app.state.is_on_whatsapp(digits))
    after = app.state.take_post_send_faults(instance.name)
    app.sleep(after.hang)
    if after.ambiguous:
        return Response(*waha_contract.error(500, "Internal server error"), drip=after.drip)
    return Response(201, payload, drip=after.drip)


def check_exists(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`GET /api/contacts/check-exists?phone=&session=`."""
    if _status(instance) != waha_contract.WORKING:
        return _reply(waha_contract.not_working(instance.name, _status(instance)))
    phone = request.param("phone") or ""
    digits = contract.number_digits(phone)
    if not digits:
        return _reply(waha_contract.validation_error("phone should not be empty"))
    return Response(200, waha_contract.check_exists(digits, app.state.is_on_whatsapp(digits)))


def chat_messages(app: SandboxApp, request: Request, instance: SandboxInstance, chat: str) -> Response:
    """`GET /api/{session}/chats/{chatId}/messages`: what the sandbox accepted for that chat,
    newest first (it holds only our messages, so `filter.fromMe` keeps them all)."""
    latency, hang, drip = app.state.take_read_faults(instance.name)
    app.sleep(latency + hang)
    if _status(instance) != waha_contract.WORKING:
        return _reply(waha_contract.not_working(instance.name, _status(instance)))
    try:
        limit = int(request.param("limit") or 100)
        offset = int(request.param("offset") or 0)
        since = request.param("filter.timestamp.gte")
        until = request.param("filter.timestamp.lte")
        since_value = int(since) if since is not None else None
        until_value = int(until) if until is not None else None
    except ValueError:
        return _reply(waha_contract.validation_error("limit, offset and filter.timestamp.* must be integers"))
    records = [
        record
        for record in app.state.find_messages(
            instance.name, remote_jid=unquote(chat), message_id=None, since=None, until=None
        )
        if (since_value is None or record["timestamp"] >= since_value)
        and (until_value is None or record["timestamp"] <= until_value)
    ]
    page = records[offset : offset + max(limit, 0)]
    answer = [
        waha_contract.outgoing_message(
            record=record, owner_number=instance.owner_number, ack=waha_contract.ACK_OF_STATUS.get(record["status"], 0)
        )
        for record in page
    ]
    return Response(200, answer, drip=drip)


# ----------------------------------------------------------------------------- sessions
def get_session(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    latency, hang, drip = app.state.take_read_faults(instance.name)
    app.sleep(latency + hang)
    return Response(200, _info(instance), drip=drip)


def create_session(app: SandboxApp, request: Request) -> Response:
    """`POST /api/sessions {name, start, config}` (the server key only)."""
    if _auth_kind(app, request, None) != "global":
        return _reply(waha_contract.unauthorized())
    body = _body(request)
    if isinstance(body, Response):
        return body
    name = body.get("name")
    if not isinstance(name, str) or not name:
        return _reply(waha_contract.validation_error("name must be a string"))
    if app.state.get_instance(name) is not None:
        return _reply(waha_contract.session_exists(name))
    config = body["config"] if isinstance(body.get("config"), dict) else {}
    try:
        created = app.state.create_instance(name, app.state.config.api_key, provider="waha", state="close")
    except OptionError as exc:
        return _reply(waha_contract.validation_error(str(exc)))
    created = app.state.set_session_config(name, config) or created
    if body.get("start"):
        created = _move(app, created, "qr")
    return Response(201, _info(created))


def update_session(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`PUT /api/sessions/{session} {config}`: the config replaced (a running session restarts)."""
    body = _body(request)
    if isinstance(body, Response):
        return body
    config = body.get("config")
    if not isinstance(config, dict):
        return _reply(waha_contract.validation_error("config must be an object"))
    for hook in config.get("webhooks") or []:
        if not isinstance(hook, dict) or not isinstance(hook.get("url"), str):
            return _reply(waha_contract.validation_error("webhooks.url must be a URL"))
    updated = app.state.set_session_config(instance.name, config) or instance
    return Response(200, _info(updated))


def start(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    if instance.state == "close":
        instance = _move(app, instance, "open" if instance.paired else "qr")
    return Response(201, _info(instance))


def stop(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    return Response(201, _info(_move(app, instance, "close")))


def restart(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """A logged-in session comes back `WORKING`; one waiting for a scan shows a new QR."""
    if instance.state == "open":
        return Response(201, _info(instance))
    return Response(201, _info(_move(app, instance, "qr")))


def logout(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`POST /api/sessions/{session}/logout`: logged out and restarted, so it waits for a new scan."""
    return Response(201, _info(_move(app, instance, "qr", logged_out=True)))


def auth_qr(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`GET /api/{session}/auth/qr` (JSON: a base64 PNG), only while `SCAN_QR_CODE`."""
    if instance.state != "qr":
        return _reply(waha_contract.qr_not_available(_status(instance)))
    return Response(200, waha_contract.qr_answer(qr_png_base64(instance.qr_code)))


# ----------------------------------------------------------------------------- routing
_SessionView = Callable[..., Response]
# (method, pattern, view, where the session name is: "path", "body" or "query")
_ROUTES: list[tuple[str, re.Pattern[str], _SessionView, str]] = [
    ("POST", re.compile(r"^/api/sendText/?$"), send_text, "body"),
    ("GET", re.compile(r"^/api/contacts/check-exists/?$"), check_exists, "query"),
    ("GET", re.compile(r"^/api/sessions/(?P<session>[^/]+)/?$"), get_session, "path"),
    ("PUT", re.compile(r"^/api/sessions/(?P<session>[^/]+)/?$"), update_session, "path"),
    ("POST", re.compile(r"^/api/sessions/(?P<session>[^/]+)/start/?$"), start, "path"),
    ("POST", re.compile(r"^/api/sessions/(?P<session>[^/]+)/stop/?$"), stop, "path"),
    ("POST", re.compile(r"^/api/sessions/(?P<session>[^/]+)/restart/?$"), restart, "path"),
    ("POST", re.compile(r"^/api/sessions/(?P<session>[^/]+)/logout/?$"), logout, "path"),
    ("GET", re.compile(r"^/api/(?P<session>[^/]+)/auth/qr/?$"), auth_qr, "path"),
    ("GET", re.compile(r"^/api/(?P<session>[^/]+)/chats/(?P<chat>[^/]+)/messages/?$"), chat_messages, "path"),
]


def _session_name(request: Request, where: str, match: re.Match[str]) -> str:
    if where == "path":
        return unquote(match["session"])
    if where == "query":
        return request.param("session") or "default"
    try:
        body = request.json()
    except BodyError:
        return "default"
    return str(body.get("session") or "default") if isinstance(body, dict) else "default"


def handle(app: SandboxApp, request: Request) -> Response:
    if request.method == "POST" and re.match(r"^/api/sessions/?$", request.path):
        entry = _log(app, request, None, None)
        response = create_session(app, request)
        app.state.finish_request(entry, response.status)
        return response
    for method, pattern, view, where in _ROUTES:
        match = pattern.match(request.path)
        if not match or request.method != method:
            continue
        name = _session_name(request, where, match)
        instance = app.state.get_instance(name)
        if instance is not None and instance.provider != "waha":
            instance = None  # an Evolution instance is not a WAHA session
        entry = _log(app, request, name, instance)
        if _auth_kind(app, request, instance) not in ("global", "instance"):
            response = _reply(waha_contract.unauthorized())
        elif instance is None:
            response = _reply(waha_contract.session_not_found())
        else:
            extra = [unquote(match["chat"])] if "chat" in match.groupdict() else []
            response = view(app, request, instance, *extra)
        app.state.finish_request(entry, response.status)
        return response
    entry = _log(app, request, None, None)
    response = _reply(waha_contract.error(404, f"Cannot {request.method} {request.path}"))
    app.state.finish_request(entry, response.status)
    return response


def _log(app: SandboxApp, request: Request, name: str | None, instance: SandboxInstance | None) -> dict[str, Any]:
    return app.state.log_request(
        method=request.method,
        path=request.path,
        instance=name,
        body=request.recorded_body(),
        auth=_auth_kind(app, request, instance),
        user_agent=request.header("user-agent") or "",
        peer=request.peer,
    )
