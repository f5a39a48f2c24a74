"""Oversized bodies are refused before they are read, on every route, by the real web process:
uvicorn serving config.asgi, a raw socket pushing a 200 MB chunked body without credentials,
the answer's time, how much of the body the server let in, and the server's memory."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.sandbox_process import wait_for

BACKEND = Path(__file__).resolve().parents[3]
CHUNK = 64 * 1024
TOTAL = 200 * 1024 * 1024
LIMIT = 1024 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """uvicorn on a socket this test bound (no pick-then-bind race), API_MAX_BODY_BYTES = 1 MiB."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    log = tmp_path_factory.mktemp("web") / "uvicorn.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "API_MAX_BODY_BYTES": str(LIMIT),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--fd",
                str(listener.fileno()),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=BACKEND,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),),
        )
    listener.close()
    try:
        wait_for(
            lambda: request(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").startswith(b"HTTP/1.1 200"),
            timeout=30,
            interval=0.2,
            what=f"uvicorn up ({log})",
        )
        yield port, process.pid
    finally:
        process.terminate()  # by PID: the process this fixture started
        process.wait(timeout=10)


def request(port: int, raw: bytes) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(raw)
            return sock.recv(65536)
    except OSError:
        return b""


def push_chunked(port: int, path: str, *, content_length: int | None = None) -> tuple[bytes, int, float]:
    """Send up to 200 MB (chunked, or with a declared length), stop when the answer arrives.
    Returns (answer, bytes of body sent by then, seconds)."""
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {content_length}\r\n\r\n" if content_length else "Transfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * CHUNK
    frame = chunk if content_length else f"{CHUNK:x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while sent < TOTAL and time.monotonic() - started < 20:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:
                answer = sock.recv(65536)
                break
            if writable:
                try:
                    sock.sendall(frame)
                except OSError:
                    break  # the server closed on us: its answer is already in the socket
                sent += CHUNK
        seconds = time.monotonic() - started
        answer = read_rest(sock, answer)
    return answer, sent, seconds


def read_rest(sock: socket.socket, answer: bytes) -> bytes:
    """Read until the head and `Content-Length` bytes of body are in (or the peer closes)."""
    sock.settimeout(5)
    while True:
        head, separator, body = answer.partition(b"\r\n\r\n")
        if separator:
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            if len(body) >= length:
                return answer
        try:
            more = sock.recv(65536)
        except OSError:
            return answer
        if not more:
            return answer
        answer += more


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/billing/send/notification",
        "/admin/login/",
        "/api/v1/billing/webhooks/evolution/not-a-secret/",
        "/no/such/route",
    ],
)
def test_a_200_mb_chunked_body_is_refused_at_once_with_memory_flat(web, path):
    port, pid = web
    before = rss_kib(pid)

    answer, sent, seconds = push_chunked(port, path)

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "payload_too_large" and body["error"]["details"] == {"max_bytes": LIMIT}
    assert seconds < 5  # ~20 ms quiet; the margin is for a starved box (reading 200 MB is `sent`'s to rule out)
    assert sent < 40 * 1024 * 1024  # the limit plus the sockets' buffers, nowhere near 200 MB
    assert rss_kib(pid) - before < 20 * 1024  # KiB: the body was never held


def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read(web):
    port, pid = web

    answer, sent, seconds = push_chunked(port, "/api/v1/billing/send/overdue", content_length=TOTAL)

    assert answer.startswith(b"HTTP/1.1 413")
    assert sent < 40 * 1024 * 1024 and seconds < 5  # margin for a starved box, as above


def test_a_body_under_the_limit_still_reaches_django(web):
    port, _pid = web
    body = b'{"external_id": "x", "contacts": []}'
    answer = request(
        port,
        b"POST /api/v1/billing/send/notification HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
    )
    assert answer.startswith(b"HTTP/1.1 401")  # no key: Django's authentication answered
