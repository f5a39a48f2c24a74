"""Control endpoints under `/_sandbox/`: create and configure instances (Evolution or WAHA),
flip fault switches, read what the sandbox received, trigger inbound replies, scan a pairing QR,
log a number out from "the phone", reset. Not part of any provider's contract; plain JSON,
errors as `{"error": "..."}`. No authentication: the sandbox binds to loopback by default and is
a test and local-run tool only (docs/providers.md lists them all)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .http_handler import BodyError, Request, Response
from .state import OptionError

if TYPE_CHECKING:
    from .app import SandboxApp

PREFIX = "/_sandbox"


def _error(status: int, message: str) -> Response:
    return Response(status, {"error": message})


def _body(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise BodyError("the body must be a JSON object")
    return body


# ----------------------------------------------------------------------------- views
def health(app: SandboxApp, request: Request) -> Response:
    return Response(200, {"status": "ok", "pending_jobs": app.scheduler.pending()})


def get_config(app: SandboxApp, request: Request) -> Response:
    return Response(200, app.state.config.public())


def patch_config(app: SandboxApp, request: Request) -> Response:
    return Response(200, app.state.update_config(_body(request)))


def reset(app: SandboxApp, request: Request) -> Response:
    app.scheduler.clear()
    app.state.reset()
    return Response(200, {"status": "reset"})


def clear(app: SandboxApp, request: Request) -> Response:
    app.state.clear(request.param("instance"))
    return Response(200, {"status": "cleared"})


def list_instances(app: SandboxApp, request: Request) -> Response:
    return Response(200, [instance.public() for instance in app.state.list_instances()])


def create_instance(app: SandboxApp, request: Request) -> Response:
    body = _body(request)
    name = body.pop("name", None)
    token = body.pop("token", None)
    if token is not None and (not isinstance(token, str) or not token):
        raise OptionError("token must be a non-empty string")
    instance = app.state.create_instance(name, token, **body)  # replaces one of the same name
    return Response(201, instance.public())


def get_instance(app: SandboxApp, request: Request, name: str) -> Response:
    instance = app.state.get_instance(name)
    if instance is None:
        return _error(404, f"no instance {name!r}")
    return Response(200, instance.public())


def configure_instance(app: SandboxApp, request: Request, name: str) -> Response:
    """Change options; a new `state` is announced by the provider's webhook ("qr": a fresh QR)."""
    body = _body(request)
    state = body.pop("state", None)
    result = app.state.configure_instance(name, body)
    if result is None:
        return _error(404, f"no instance {name!r}")
    instance = result[0]
    if state is not None:
        moved = app.state.set_state(name, state)
        if moved is None:
            return _error(404, f"no instance {name!r}")
        instance = moved[0]
        app.events.state_changed(moved[0], moved[1])
    return Response(200, instance.public())


def scan(app: SandboxApp, request: Request, name: str) -> Response:
    """Someone scans the QR with their phone: a pairing instance connects."""
    instance = app.state.get_instance(name)
    if instance is None:
        return _error(404, f"no instance {name!r}")
    if instance.state != "qr":
        return _error(409, f"instance {name!r} is not waiting for a QR scan (state {instance.state!r})")
    moved = app.state.set_state(name, "open")
    if moved is None:  # deleted meanwhile
        return _error(404, f"no instance {name!r}")
    app.events.state_changed(moved[0], moved[1])
    return Response(200, moved[0].public())


def phone_logout(app: SandboxApp, request: Request, name: str) -> Response:
    """The number's owner logs this device out from the phone (or WhatsApp bans it): Evolution
    closes with statusReason 401 and `logout.instance`; WAHA goes back to `SCAN_QR_CODE`."""
    instance = app.state.get_instance(name)
    if instance is None:
        return _error(404, f"no instance {name!r}")
    moved = app.state.set_state(name, "qr" if instance.provider == "waha" else "close", logged_out=True)
    if moved is None:  # deleted meanwhile
        return _error(404, f"no instance {name!r}")
    app.events.state_changed(moved[0], moved[1], logged_out=True)
    return Response(200, moved[0].public())


def delete_instance(app: SandboxApp, request: Request, name: str) -> Response:
    if not app.state.delete_instance(name):
        return _error(404, f"no instance {name!r}")
    return Response(200, {"status": "deleted"})


def inbound(app: SandboxApp, request: Request, name: str) -> Response:
    instance = app.state.get_instance(name)
    if instance is None:
        return _error(404, f"no instance {name!r}")
    body = _body(request)
    number, text = body.get("number"), body.get("text")
    if not isinstance(number, str) or not number or not isinstance(text, str):
        raise OptionError("number (string) and text (string) are required")
    reply_to = body.get("reply_to")
    push_name = body.get("push_name") or "Cliente"
    data = app.events.inbound(instance, number=number, text=text, push_name=str(push_name), reply_to=reply_to)
    return Response(201, data)


def list_messages(app: SandboxApp, request: Request) -> Response:
    return Response(200, app.state.list_messages(request.param("instance"), request.param("number")))


def clear_messages(app: SandboxApp, request: Request) -> Response:
    app.state.clear(request.param("instance"), kinds=("messages",))
    return Response(200, {"status": "cleared"})


def list_requests(app: SandboxApp, request: Request) -> Response:
    return Response(
        200, app.state.list_requests(request.param("instance"), request.param("path"), request.param("method"))
    )


def list_webhooks(app: SandboxApp, request: Request) -> Response:
    return Response(200, app.state.list_webhooks(request.param("instance"), request.param("event")))


# ----------------------------------------------------------------------------- routing
_ROUTES: list[tuple[re.Pattern[str], dict[str, Callable[..., Response]]]] = [
    (re.compile(r"^/health$"), {"GET": health}),
    (re.compile(r"^/config$"), {"GET": get_config, "PATCH": patch_config, "POST": patch_config}),
    (re.compile(r"^/reset$"), {"POST": reset}),
    (re.compile(r"^/clear$"), {"POST": clear}),
    (re.compile(r"^/instances$"), {"GET": list_instances, "POST": create_instance}),
    (
        re.compile(r"^/instances/(?P<name>[^/]+)$"),
        {"GET": get_instance, "PATCH": configure_instance, "POST": configure_instance, "DELETE": delete_instance},
    ),
    (re.compile(r"^/instances/(?P<name>[^/]+)/inbound$"), {"POST": inbound}),
    (re.compile(r"^/instances/(?P<name>[^/]+)/scan$"), {"POST": scan}),
    (re.compile(r"^/instances/(?P<name>[^/]+)/logout$"), {"POST": phone_logout}),
    (re.compile(r"^/messages$"), {"GET": list_messages, "DELETE": clear_messages}),
    (re.compile(r"^/requests$"), {"GET": list_requests}),
    (re.compile(r"^/webhooks$"), {"GET": list_webhooks}),
]


def handle(app: SandboxApp, request: Request) -> Response:
    path = request.path[len(PREFIX) :].rstrip("/") or "/"
    for pattern, views in _ROUTES:
        match = pattern.match(path)
        if not match:
            continue
        view = views.get(request.method)
        if view is None:
            return _error(405, f"{request.method} not allowed on {request.path}")
        args = [unquote(value) for value in match.groupdict().values()]
        try:
            return view(app, request, *args)
        except (OptionError, BodyError) as exc:
            return _error(400, str(exc))
    return _error(404, f"no control endpoint {request.path}")
