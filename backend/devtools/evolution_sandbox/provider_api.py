"""The Evolution API routes, with the real server's guard order: unknown instance → 404 before
the key is looked at, then a missing or wrong `apikey` → 401 (contract §1.1). The global key
works everywhere; an instance token only on routes naming that instance (and fetchInstances).
A WAHA-mode sandbox instance does not exist here. Every request is recorded
(GET /_sandbox/requests), answered or not.

Pairing, as `instance.controller.ts` does it: `POST /instance/create` (global key; a QR right
away when `qrcode` is set), `GET /instance/connect/{instance}` (the QR to scan while not
connected), `POST /instance/restart/{instance}`, `DELETE /instance/logout/{instance}`."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from . import contract
from .http_handler import BodyError, Request, Response
from .pairing import qr_data_url
from .state import OptionError, SandboxInstance

if TYPE_CHECKING:
    from .app import SandboxApp


def _auth_kind(app: SandboxApp, request: Request, instance: SandboxInstance | None) -> str:
    return app.state.key_kind(request.header("apikey"), instance)


def _reply(status_and_body: tuple[int, Any], headers: dict[str, str] | None = None) -> Response:
    status, body = status_and_body
    return Response(status, body, headers or {})


# ----------------------------------------------------------------------------- routes
def welcome(app: SandboxApp, request: Request) -> Response:
    return Response(200, contract.welcome(app.state.config.version))


def _validate_send_v2(body: Any) -> tuple[str, str] | Response:
    if not isinstance(body, dict):
        return _reply(contract.schema_error("instance is not of a type(s) object"))
    missing = [name for name in ("number", "text") if name not in body]
    if missing:
        return _reply(contract.schema_error(*[f'instance requires property "{name}"' for name in missing]))
    if not isinstance(body["number"], str):
        return _reply(contract.schema_error("Invalid format"))
    if not isinstance(body["text"], str):
        return _reply(contract.schema_error("text is not of a type(s) string"))
    if not body["number"]:
        return _reply(contract.schema_error('The "number" cannot be empty'))
    return body["number"], body["text"]


def _validate_send_v1(body: Any) -> tuple[str, str] | Response:
    if not isinstance(body, dict):
        return _reply(contract.schema_error("instance is not of a type(s) object"))
    missing = [name for name in ("textMessage", "number") if name not in body]
    if missing:
        return _reply(contract.schema_error(*[f'instance requires property "{name}"' for name in missing]))
    if not isinstance(body["number"], str):
        return _reply(contract.schema_error("Invalid format"))
    text_message = body["textMessage"]
    if not isinstance(text_message, dict) or "text" not in text_message:
        return _reply(contract.schema_error('textMessage requires property "text"'))
    if not isinstance(text_message["text"], str) or not text_message["text"]:
        return _reply(contract.schema_error('The "text" cannot be empty'))
    return body["number"], text_message["text"]


def send_text(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`POST /message/sendText/{instance}` (§1.2-1.5; v1 body per §2 when the instance is v1)."""
    faults = app.state.take_pre_send_faults(instance.name)
    app.sleep(faults.latency)
    if faults.retry_after is not None:
        return _reply(contract.rate_limited(), {"Retry-After": str(int(math.ceil(faults.retry_after)))})
    if faults.failure is not None:
        status, message = faults.failure
        return Response(status, contract.error_body(status, message))
    try:
        body = request.json()
    except BodyError:
        return _reply(contract.bad_request("Unexpected token in JSON body"))
    v1 = instance.api_version == "v1"
    validated = _validate_send_v1(body) if v1 else _validate_send_v2(body)
    if isinstance(validated, Response):
        return validated
    number, text = validated
    if not text.strip():
        return _reply(contract.bad_request("Text is required"))
    if not instance.loaded:
        return _reply(contract.instance_not_loaded())
    if instance.state != "open":
        return _reply(contract.connection_closed())
    jid = contract.create_jid(number)
    if not app.state.is_on_whatsapp(number):
        return _reply(contract.not_on_whatsapp(jid, number))
    record = app.state.record_message(instance, number=number, jid=jid, text=text)
    if v1:
        payload = contract.send_response_v1(message_id=record["id"], jid=jid, text=text, timestamp=record["timestamp"])
    else:
        payload = contract.send_response_v2(
            message_id=record["id"], jid=jid, text=text, timestamp=record["timestamp"], instance_id=instance.id
        )
    app.events.message_sent(instance, record, payload)
    after = app.state.take_post_send_faults(instance.name)
    app.sleep(after.hang)  # the message went out; the answer is late (or never arrives)
    if after.ambiguous:
        return Response(*contract.ambiguous_failure(), drip=after.drip)
    return Response(201, payload, drip=after.drip)


def connection_state(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`GET /instance/connectionState/{instance}` (§3)."""
    latency, hang, drip = app.state.take_read_faults(instance.name)
    app.sleep(latency + hang)
    state = contract.evolution_state(instance.state) if instance.loaded else None
    return Response(200, contract.connection_state(instance.name, state), drip=drip)


def _qr(app: SandboxApp, instance: SandboxInstance) -> dict[str, Any]:
    """Into pairing (a fresh QR unless one is showing), announced like a real connection attempt."""
    moved = app.state.set_state(instance.name, "qr")
    if moved is None:
        return {}
    current, previous = moved
    app.events.state_changed(current, previous)
    return contract.qr_code_answer(code=current.qr_code, image=qr_data_url(current.qr_code), count=current.qr_count)


def connect(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`GET /instance/connect/{instance}`: open → its state; otherwise the QR to scan."""
    if instance.state == "open":
        return Response(200, contract.connection_state(instance.name, "open"))
    return Response(200, _qr(app, instance))


def restart(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`POST /instance/restart/{instance}`: refused when closed; an open one reconnects."""
    if instance.state == "close":
        return _reply(contract.not_connected(instance.name))
    if instance.state == "open":
        return Response(200, contract.connection_state(instance.name, "open"))
    return Response(200, _qr(app, instance))


def logout(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`DELETE /instance/logout/{instance}`: the session ends (`connection.update` close, 401)."""
    if instance.state == "close":
        return _reply(contract.not_connected(instance.name))
    moved = app.state.set_state(instance.name, "close", logged_out=True)
    if moved is not None:
        app.events.state_changed(moved[0], moved[1], logged_out=True)
    return Response(200, contract.logout_answer())


def create_instance(app: SandboxApp, request: Request) -> Response:
    """`POST /instance/create` (global key only): a new instance, its webhook, its first QR."""
    if _auth_kind(app, request, None) != "global":
        return _reply(contract.unauthorized())
    try:
        body = request.json()
    except BodyError:
        return _reply(contract.bad_request("Unexpected token in JSON body"))
    if not isinstance(body, dict) or not isinstance(body.get("instanceName"), str) or not body["instanceName"]:
        return _reply(contract.schema_error('instance requires property "instanceName"'))
    name = body["instanceName"]
    if app.state.get_instance(name) is not None:
        return _reply(contract.name_in_use(name))
    webhook: dict[str, Any] | None = None
    if body.get("webhook") is not None:
        validated = _validate_webhook({"webhook": body["webhook"]}, False)
        if isinstance(validated, Response):
            return validated
        webhook = validated
    token = body.get("token") if isinstance(body.get("token"), str) and body.get("token") else None
    try:
        created = app.state.create_instance(name, token, state="close")
    except OptionError as exc:
        return _reply(contract.bad_request(str(exc)))
    if webhook is not None:
        created = app.state.set_webhook(name, webhook) or created
    qrcode = _qr(app, created) if body.get("qrcode") else None
    return Response(
        201,
        contract.create_instance_answer(
            name=name, instance_id=created.id, token=created.token, webhook=webhook, qrcode=qrcode
        ),
    )


def find_messages(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`POST /chat/findMessages/{instance}`: what the sandbox recorded, in v2's paged shape
    (`fetchMessages` of the channel service; docs/providers.md, "Reconciliation")."""
    latency, hang, drip = app.state.take_read_faults(instance.name)
    app.sleep(latency + hang)
    try:
        body = request.json()
    except BodyError:
        return _reply(contract.bad_request("Unexpected token in JSON body"))
    query = contract.parse_find_messages_query(body)
    if isinstance(query, str):
        return _reply(contract.schema_error(query))
    # The sandbox holds only messages it sent (fromMe): a `fromMe` filter keeps them all.
    records = app.state.find_messages(
        instance.name, remote_jid=query.remote_jid, message_id=query.message_id, since=query.since, until=query.until
    )
    return Response(
        200,
        contract.find_messages_page(records, page=query.page, page_size=query.page_size, instance_id=instance.id),
        drip=drip,
    )


def fetch_instances(app: SandboxApp, request: Request) -> Response:
    """`GET /instance/fetchInstances[?instanceName=&instanceId=]` (§3): all with the global key,
    only the token's own instance with an instance token."""
    key = request.header("apikey")
    name = request.param("instanceName")
    instance_id = request.param("instanceId")
    if app.state.key_kind(key, None) == "global":
        instances = app.state.list_instances()
        if name is not None:
            instances = [instance for instance in instances if instance.name == name]
            if not instances:
                return Response(404, contract.error_body(404, [f'Instance "{name}" not found']))
    elif key:
        instances = [instance for instance in app.state.find_by_token(key) if name is None or instance.name == name]
        if not instances:
            return _reply(contract.unauthorized())
    else:
        return _reply(contract.unauthorized())
    instances = [instance for instance in instances if instance.provider == "evolution"]
    if instance_id is not None:
        instances = [instance for instance in instances if instance.id == instance_id]
    rows = [
        contract.fetch_instance_row(instance.public(), message_count=len(app.state.list_messages(instance.name)))
        for instance in instances
    ]
    return Response(200, rows)


def _validate_webhook(body: Any, v1: bool) -> dict[str, Any] | Response:
    if v1 and isinstance(body, dict) and "webhook" not in body:  # 1.8: flat body, snake_case flags
        body = {
            "webhook": {
                key: body[old]
                for key, old in (
                    ("enabled", "enabled"),
                    ("url", "url"),
                    ("events", "events"),
                    ("byEvents", "webhook_by_events"),
                    ("base64", "webhook_base64"),
                )
                if old in body
            }
        }
    if not isinstance(body, dict) or "webhook" not in body:
        return _reply(contract.schema_error('instance requires property "webhook"'))
    hook = body["webhook"]
    if not isinstance(hook, dict):
        return _reply(contract.schema_error("webhook is not of a type(s) object"))
    missing = [name for name in ("enabled", "url") if name not in hook]
    if missing:
        return _reply(contract.schema_error(*[f'webhook requires property "{name}"' for name in missing]))
    for name, kind, label in (
        ("enabled", bool, "boolean"),
        ("url", str, "string"),
        ("byEvents", bool, "boolean"),
        ("base64", bool, "boolean"),
        ("headers", dict, "object"),
        ("events", list, "array"),
    ):
        if name in hook and hook[name] is not None and not isinstance(hook[name], kind):
            return _reply(contract.schema_error(f"webhook.{name} is not of a type(s) {label}"))
    events = list(hook.get("events") or [])
    for index, event in enumerate(events):
        if event not in contract.WEBHOOK_EVENTS:
            return _reply(
                contract.schema_error(
                    f"webhook.events[{index}] is not one of enum values: {', '.join(contract.WEBHOOK_EVENTS)}"
                )
            )
    url = urlsplit(hook["url"])
    if url.scheme not in ("http", "https") or not url.hostname:
        return _reply(contract.bad_request('Invalid "url" property'))
    enabled = hook["enabled"]
    return {
        "enabled": enabled,
        "url": hook["url"],
        "headers": hook.get("headers") or {},
        "byEvents": bool(hook.get("byEvents")),
        "base64": bool(hook.get("base64")),
        # disabled: no events; enabled with an empty list: every event (webhook.controller.ts `set`)
        "events": (events or list(contract.WEBHOOK_EVENTS)) if enabled else [],
    }


def webhook_set(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`POST /webhook/set/{instance}` (§4) → 201 with the stored row."""
    try:
        body = request.json()
    except BodyError:
        return _reply(contract.bad_request("Unexpected token in JSON body"))
    webhook = _validate_webhook(body, instance.api_version == "v1")
    if isinstance(webhook, Response):
        return webhook
    updated = app.state.set_webhook(instance.name, webhook)
    if updated is None:
        return _reply(contract.instance_not_found(instance.name))
    return Response(201, contract.webhook_row(webhook=webhook, instance_id=updated.id))  # stored as given, with its id


def webhook_find(app: SandboxApp, request: Request, instance: SandboxInstance) -> Response:
    """`GET /webhook/find/{instance}` (§4) → the row, or null when none was set."""
    if not instance.webhook:
        return Response(200, None)
    return Response(200, contract.webhook_row(webhook=instance.webhook, instance_id=instance.id))


# ----------------------------------------------------------------------------- routing
_GuardedView = Callable[["SandboxApp", Request, SandboxInstance], Response]
_OpenView = Callable[["SandboxApp", Request], Response]

_INSTANCE_ROUTES: list[tuple[str, re.Pattern[str], _GuardedView]] = [
    ("POST", re.compile(r"^/message/sendText/(?P<instance>[^/]+)/?$"), send_text),
    ("GET", re.compile(r"^/instance/connectionState/(?P<instance>[^/]+)/?$"), connection_state),
    ("POST", re.compile(r"^/webhook/set/(?P<instance>[^/]+)/?$"), webhook_set),
    ("GET", re.compile(r"^/webhook/find/(?P<instance>[^/]+)/?$"), webhook_find),
    ("POST", re.compile(r"^/chat/findMessages/(?P<instance>[^/]+)/?$"), find_messages),
    ("GET", re.compile(r"^/instance/connect/(?P<instance>[^/]+)/?$"), connect),
    ("POST", re.compile(r"^/instance/restart/(?P<instance>[^/]+)/?$"), restart),
    ("DELETE", re.compile(r"^/instance/logout/(?P<instance>[^/]+)/?$"), logout),
]
_OPEN_ROUTES: list[tuple[str, re.Pattern[str], _OpenView]] = [
    ("GET", re.compile(r"^/$"), welcome),
    ("GET", re.compile(r"^/instance/fetchInstances/?$"), fetch_instances),
    ("POST", re.compile(r"^/instance/create/?$"), create_instance),
]


def handle(app: SandboxApp, request: Request) -> Response:
    for method, pattern, view in _INSTANCE_ROUTES:
        match = pattern.match(request.path)
        if match and request.method == method:
            name = unquote(match["instance"])
            instance = app.state.get_instance(name)
            if instance is not None and instance.provider != "evolution":
                instance = None  # a WAHA session is not an Evolution instance
            entry = _log(app, request, name, instance)
            if instance is None:
                response = _reply(contract.instance_not_found(name))
            elif _auth_kind(app, request, instance) not in ("global", "instance"):
                response = _reply(contract.unauthorized())
            else:
                response = view(app, request, instance)
            app.state.finish_request(entry, response.status)
            return response
    for method, pattern, open_view in _OPEN_ROUTES:
        if pattern.match(request.path) and request.method == method:
            entry = _log(app, request, request.param("instanceName"), None)
            response = open_view(app, request)
            app.state.finish_request(entry, response.status)
            return response
    entry = _log(app, request, None, None)
    response = _reply(contract.route_not_found(request.method, request.path))
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
