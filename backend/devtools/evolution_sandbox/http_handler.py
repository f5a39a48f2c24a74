"""The HTTP plumbing: a tiny request/response pair and the `BaseHTTPRequestHandler` that turns
sockets into them. HTTP/1.1 with keep-alive, like the real server, so the client's connection
pool is exercised too."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from .app import SandboxApp

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024


class BodyError(ValueError):
    """The request body is not the JSON the route needs."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    peer: str = ""  # client host:port (the same port twice = a kept-alive connection)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def recorded_body(self) -> Any:
        """The body as the request log keeps it: JSON when it parses, else the text."""
        try:
            return self.json() if self.body else None
        except BodyError:
            return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BodyError("the body is not valid JSON") from exc


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    drip: float = 0.0  # > 0: the answer is written one byte every `drip` seconds (a dying proxy)


class SandboxRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EvolutionSandbox/1.0"
    sys_version = ""
    # Headers and body go out as separate writes; without TCP_NODELAY, Nagle plus the client's
    # delayed ACK adds ~40 ms to every answer on a kept-alive connection.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        app: SandboxApp = self.server.app  # type: ignore[attr-defined]  # a SandboxServer; socketserver types a BaseServer
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._write(Response(413, {"error": "body too large"}))
            return
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            peer=f"{self.client_address[0]}:{self.client_address[1]}",
        )
        try:
            response = app.handle(request)
        except Exception:  # the sandbox must answer, like the real server's error handler
            logger.exception("sandbox request failed", extra={"path": parts.path})
            response = Response(
                500, {"status": 500, "error": "Internal Server Error", "response": {"message": ["sandbox error"]}}
            )
        self._write(response)

    def _write(self, response: Response) -> None:
        payload = json.dumps(response.body, ensure_ascii=False).encode("utf-8")
        if response.drip > 0:
            self._drip(response, payload)
            return
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # the client gave up (e.g. its read timeout hit during a simulated hang)
            self.close_connection = True

    def _drip(self, response: Response, payload: bytes) -> None:
        """Status line, headers and body, one byte at a time: every read the client makes gets
        something, so only a total deadline ends the call. The connection is closed afterwards."""
        app: SandboxApp = self.server.app  # type: ignore[attr-defined]  # a SandboxServer; socketserver types a BaseServer
        head = [
            f"HTTP/1.1 {response.status} {self.responses.get(response.status, ('',))[0]}",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(payload)}",
            "Connection: close",
            *[f"{name}: {value}" for name, value in response.headers.items()],
        ]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload
        self.close_connection = True
        try:
            for index in range(len(raw)):
                self.wfile.write(raw[index : index + 1])
                self.wfile.flush()
                if app.stopping(response.drip):
                    return
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client's deadline cut the call

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox %s %s", self.address_string(), format % args)
