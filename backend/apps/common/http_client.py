"""Outbound HTTP with a total wall-clock deadline, an address guard and a clear "nothing left us".

Every call we make to somebody else's server (a provider send or health check, a client
callback) goes through `DeadlineHTTPClient.request`. Three promises:

- **A total deadline.** DNS, connect, TLS, sending the request, the headers and the body all
  fit in `deadline` seconds of wall-clock time, whatever the peer does: a server that drips
  one byte every few seconds is cut at the deadline, not at "N seconds without a byte".
  libcurl (through pycurl) enforces it (`CURLOPT_TIMEOUT_MS`), and its threaded resolver keeps
  DNS inside it. `requests` and `httpx` only bound each read, so a dripping peer stretches them
  without limit (docs/architecture.md, "Dependencies", has the measurements).
- **The address guard.** libcurl asks us for every socket it opens (`OPENSOCKETFUNCTION`) and
  passes the resolved address it is about to connect to: an address the call's
  `AddressPolicy` refuses (apps/common/url_safety.py) gets no socket, so not one packet reaches
  it, and DNS rebinding gains nothing. A reused connection's peer is judged again before the
  request is written (`PREREQFUNCTION`). No proxy from the environment is used (the proxy would be
  the peer we check).
- **Whether anything left.** `HTTPCallError.nothing_sent` is True only when the request
  provably never reached the wire: libcurl calls `PREREQFUNCTION` after the connection (and its
  TLS handshake) is ready and before the first byte of the request is written; a failure before
  that call sent nothing.

Connections: one libcurl handle per thread (its connection cache is kept between calls; a
forked child makes its own). `reuse_connection=False` opens a fresh connection and closes it
after the call: libcurl silently re-sends a request on a new connection when a reused one
dies before answering, which is right for a read and wrong for a message send.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import certifi
import pycurl

from .url_safety import AddressPolicy

# What a failed call is, in a word (HTTPCallError.kind).
DNS = "dns"  # the name did not resolve
CONNECT = "connect"  # refused, unreachable, reset before the request
CONNECT_TIMEOUT = "connect_timeout"  # the deadline or connect timeout ran out before the request
TLS = "tls"  # handshake or certificate failure
REFUSED_ADDRESS = "refused_address"  # the address guard refused the resolved address
DEADLINE = "deadline"  # the deadline ran out after the request was (maybe) written
DROPPED = "dropped"  # the connection failed after the request was (maybe) written
TOO_LARGE = "too_large"  # the answer was longer than the client accepts
BAD_URL = "bad_url"  # not an http(s) URL libcurl can use

_TLS_CODES = frozenset(
    getattr(pycurl, name)
    for name in (
        "E_SSL_CONNECT_ERROR",
        "E_SSL_ENGINE_NOTFOUND",
        "E_SSL_ENGINE_SETFAILED",
        "E_SSL_CERTPROBLEM",
        "E_SSL_CIPHER",
        "E_PEER_FAILED_VERIFICATION",
        "E_SSL_CACERT",
        "E_SSL_CACERT_BADFILE",
        "E_SSL_CRL_BADFILE",
        "E_SSL_ISSUER_ERROR",
        "E_SSL_PINNEDPUBKEYNOTMATCH",
        "E_SSL_INVALIDCERTSTATUS",
    )
    if hasattr(pycurl, name)
)
_BAD_URL_CODES = frozenset({pycurl.E_UNSUPPORTED_PROTOCOL, pycurl.E_URL_MALFORMAT})


@dataclass(frozen=True)
class HTTPResponse:
    """A complete answer (status line, headers and the whole body, read within the deadline)."""

    status: int
    headers: Mapping[str, str]  # lower-case names; the last value of a repeated header
    body: bytes
    elapsed: float  # seconds

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The decoded body, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class HTTPCallError(Exception):
    """The call produced no complete answer. `kind` is one of the module constants;
    `nothing_sent` is True only when no byte of the request can have reached the peer."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        nothing_sent: bool,
        elapsed: float,
        curl_code: int | None = None,
        refused_because: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.nothing_sent = nothing_sent
        self.elapsed = elapsed
        self.curl_code = curl_code
        self.refused_because = refused_because  # the address guard's reason, for REFUSED_ADDRESS


class HTTPStatusError(Exception):
    """A complete answer the caller did not accept; chained as the cause of the caller's own
    error (`raise ... from HTTPStatusError(response)`) so the answer stays inspectable."""

    def __init__(self, response: HTTPResponse) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


@dataclass
class _CallState:
    """What the callbacks of one call learnt (libcurl calls them on this thread)."""

    policy: AddressPolicy
    max_bytes: int
    read_body: bool = True
    body_skipped: bool = False
    request_started: bool = False
    refused_because: str | None = None
    too_large: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    body: io.BytesIO = field(default_factory=io.BytesIO)

    def open_socket(self, purpose: int, address: Any) -> Any:
        problem = self.policy.problem(address.addr[0])
        if problem:
            self.refused_because = problem
            return pycurl.SOCKET_BAD
        return socket.socket(address.family, address.socktype, address.protocol)

    def before_request(self, peer_ip: str, *_rest: Any) -> int:
        """Called on every connection about to carry the request, new or reused: a kept-alive
        connection opened under another policy (a test, a reload) is judged again here."""
        problem = self.policy.problem(peer_ip)
        if problem:
            self.refused_because = problem
            return pycurl.PREREQFUNC_ABORT
        self.request_started = True
        return pycurl.PREREQFUNC_OK

    def header_line(self, raw: bytes) -> None:
        line = raw.decode("iso-8859-1").rstrip("\r\n")
        if line.startswith("HTTP/"):
            self.headers.clear()  # a new response (after a 100 Continue, say)
            return
        name, colon, value = line.partition(":")
        if colon:
            self.headers[name.strip().lower()] = value.strip()

    def write(self, chunk: bytes) -> int | None:
        if not self.read_body:
            self.body_skipped = True
            return 0  # the status and headers are in: stop here, the body is not wanted
        if self.body.tell() + len(chunk) > self.max_bytes:
            self.too_large = True
            return 0  # anything but len(chunk) makes libcurl abort the transfer
        self.body.write(chunk)
        return None


def classify_failure(
    code: int, *, request_started: bool, refused_because: str | None, too_large: bool
) -> tuple[str, bool]:
    """(kind, nothing_sent) of a libcurl error. Pure; the table is documented in
    docs/providers.md ("What a failed call sent")."""
    if refused_because is not None:
        return REFUSED_ADDRESS, True
    if code in _BAD_URL_CODES:
        return BAD_URL, True
    if too_large:
        return TOO_LARGE, False
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return (DEADLINE, False) if request_started else (CONNECT_TIMEOUT, True)
    if code == pycurl.E_COULDNT_RESOLVE_HOST:
        return DNS, True
    if code in _TLS_CODES and not request_started:
        return TLS, True
    if request_started:
        return DROPPED, False
    return CONNECT, True


class DeadlineHTTPClient:
    """One configured client: its address policy, User-Agent and answer size limit. Create one
    per kind of peer (provider, callbacks) and share it: it holds no connection itself."""

    def __init__(
        self, *, policy: Callable[[], AddressPolicy], user_agent: Callable[[], str], max_response_bytes: int
    ) -> None:
        self._policy = policy
        self._user_agent = user_agent
        self.max_response_bytes = max_response_bytes
        self._local = threading.local()

    def _handle(self) -> pycurl.Curl:
        pid = os.getpid()
        if getattr(self._local, "pid", None) != pid:
            self._local.curl = pycurl.Curl()
            self._local.pid = pid
        curl: pycurl.Curl = self._local.curl
        return curl

    def request(
        self,
        method: str,
        url: str,
        *,
        deadline: float,
        connect_timeout: float,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        reuse_connection: bool = True,
        read_body: bool = True,
    ) -> HTTPResponse:
        """Make one call; return the answer (any status) or raise `HTTPCallError`.
        `read_body=False` returns once the status and headers are in, with an empty body
        (a peer's answer we have no use for is never read)."""
        state = _CallState(policy=self._policy(), max_bytes=self.max_response_bytes, read_body=read_body)
        curl = self._handle()
        curl.reset()  # options only: the connection and DNS caches stay
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.PROXY, "")  # never the environment's proxy: the guard checks the real peer
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.TIMEOUT_MS, max(1, int(deadline * 1000)))
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(min(connect_timeout, deadline) * 1000)))
        curl.setopt(
            pycurl.CAINFO, os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
        )
        curl.setopt(pycurl.USERAGENT, self._user_agent())
        curl.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in (headers or {}).items()] + ["Expect:"])
        curl.setopt(pycurl.OPENSOCKETFUNCTION, state.open_socket)
        curl.setopt(pycurl.PREREQFUNCTION, state.before_request)
        curl.setopt(pycurl.HEADERFUNCTION, state.header_line)
        curl.setopt(pycurl.WRITEFUNCTION, state.write)
        if method == "GET":
            curl.setopt(pycurl.HTTPGET, 1)
        elif method == "POST":
            curl.setopt(pycurl.POSTFIELDS, body or b"")
        else:
            curl.setopt(pycurl.CUSTOMREQUEST, method)
            if body is not None:
                curl.setopt(pycurl.POSTFIELDS, body)
        if not reuse_connection:
            curl.setopt(pycurl.FRESH_CONNECT, 1)
            curl.setopt(pycurl.FORBID_REUSE, 1)
        started = time.monotonic()
        try:
            curl.perform()
        except pycurl.error as exc:
            code = int(exc.args[0]) if exc.args else -1
            if code == pycurl.E_WRITE_ERROR and state.body_skipped:
                return HTTPResponse(
                    status=int(curl.getinfo(pycurl.RESPONSE_CODE)),
                    headers=dict(state.headers),
                    body=b"",
                    elapsed=time.monotonic() - started,
                )
            kind, nothing_sent = classify_failure(
                code,
                request_started=state.request_started,
                refused_because=state.refused_because,
                too_large=state.too_large,
            )
            raise HTTPCallError(
                f"{method} failed ({kind}): {exc.args[1] if len(exc.args) > 1 else code}",
                kind=kind,
                nothing_sent=nothing_sent,
                elapsed=time.monotonic() - started,
                curl_code=code,
                refused_because=state.refused_because,
            ) from exc
        return HTTPResponse(
            status=int(curl.getinfo(pycurl.RESPONSE_CODE)),
            headers=dict(state.headers),
            body=state.body.getvalue(),
            elapsed=time.monotonic() - started,
        )
