"""The total-deadline HTTP client on its own: the deadline holds against a dripping peer, the
address guard acts before any packet, and `nothing_sent` is only claimed when it is true."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pycurl
import pytest

from apps.common import http_client
from apps.common.http_client import DeadlineHTTPClient, HTTPCallError, classify_failure
from apps.common.url_safety import AddressPolicy


class Peer:
    """`/drip`: status line and headers one byte every 0.2 s; `/big`: a 1 MB body; `/ok`."""

    def __init__(self) -> None:
        self.requests = 0

        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                peer.requests += 1
                if self.path == "/drip":
                    try:
                        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
                            self.wfile.write(bytes([byte]))
                            time.sleep(0.2)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                body = b"x" * 1_000_000 if self.path == "/big" else b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Answer", "yes")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer():
    server = Peer()
    yield server
    server.close()


def client(*, allow_loopback: bool = True, max_bytes: int = 64 * 1024) -> DeadlineHTTPClient:
    policy = AddressPolicy("provider", allow_all=allow_loopback)
    return DeadlineHTTPClient(policy=lambda: policy, user_agent=lambda: "test", max_response_bytes=max_bytes)


def test_libcurl_resolves_names_in_a_thread_so_the_deadline_covers_dns():
    assert pycurl.version_info()[4] & pycurl.VERSION_ASYNCHDNS


def test_an_answer_comes_back_whole(peer):
    response = client().request("POST", f"{peer.url}/ok", body=b"{}", deadline=2, connect_timeout=1)

    assert (response.status, response.header("x-answer"), response.json()) == (200, "yes", {"ok": True})


def test_a_dripping_peer_is_cut_at_the_deadline_not_per_byte(peer):
    started = time.monotonic()
    with pytest.raises(HTTPCallError) as caught:
        client().request("POST", f"{peer.url}/drip", body=b"{}", deadline=1.0, connect_timeout=1)
    elapsed = time.monotonic() - started

    assert (caught.value.kind, caught.value.nothing_sent) == (http_client.DEADLINE, False)
    assert 0.9 <= elapsed < 5  # ~8 s for the whole answer at that pace; margin for a loaded box


def test_a_refused_address_gets_no_packet(peer):
    with pytest.raises(HTTPCallError) as caught:
        client(allow_loopback=False).request("POST", f"{peer.url}/ok", body=b"{}", deadline=2, connect_timeout=1)

    assert (caught.value.kind, caught.value.nothing_sent, caught.value.refused_because) == (
        http_client.REFUSED_ADDRESS,
        True,
        "loopback address",
    )
    assert peer.requests == 0


def test_a_refused_connection_sent_nothing():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HTTPCallError) as caught:
        client().request("GET", f"http://127.0.0.1:{port}/", deadline=2, connect_timeout=1)

    assert (caught.value.kind, caught.value.nothing_sent) == (http_client.CONNECT, True)


def test_an_answer_longer_than_accepted_is_cut(peer):
    with pytest.raises(HTTPCallError) as caught:
        client(max_bytes=1000).request("POST", f"{peer.url}/big", body=b"{}", deadline=2, connect_timeout=1)

    assert (caught.value.kind, caught.value.nothing_sent) == (http_client.TOO_LARGE, False)


def test_without_reading_the_body_the_status_still_comes_back(peer):
    response = client(max_bytes=0).request(
        "POST", f"{peer.url}/big", body=b"{}", deadline=2, connect_timeout=1, read_body=False
    )

    assert (response.status, response.body) == (200, b"")


@pytest.mark.parametrize(
    ("code", "started", "refused", "too_large", "expected"),
    [
        (pycurl.E_COULDNT_RESOLVE_HOST, False, None, False, (http_client.DNS, True)),
        (pycurl.E_COULDNT_CONNECT, False, None, False, (http_client.CONNECT, True)),
        (pycurl.E_COULDNT_CONNECT, False, "private address", False, (http_client.REFUSED_ADDRESS, True)),
        (pycurl.E_ABORTED_BY_CALLBACK, False, "loopback address", False, (http_client.REFUSED_ADDRESS, True)),
        (pycurl.E_OPERATION_TIMEDOUT, False, None, False, (http_client.CONNECT_TIMEOUT, True)),
        (pycurl.E_OPERATION_TIMEDOUT, True, None, False, (http_client.DEADLINE, False)),
        (pycurl.E_SSL_CONNECT_ERROR, False, None, False, (http_client.TLS, True)),
        (pycurl.E_PEER_FAILED_VERIFICATION, False, None, False, (http_client.TLS, True)),
        (pycurl.E_GOT_NOTHING, True, None, False, (http_client.DROPPED, False)),
        (pycurl.E_RECV_ERROR, True, None, False, (http_client.DROPPED, False)),
        (pycurl.E_SEND_ERROR, True, None, False, (http_client.DROPPED, False)),
        (pycurl.E_SEND_ERROR, False, None, False, (http_client.CONNECT, True)),
        (pycurl.E_WRITE_ERROR, True, None, True, (http_client.TOO_LARGE, False)),
        (pycurl.E_URL_MALFORMAT, False, None, False, (http_client.BAD_URL, True)),
    ],
)
def test_what_a_failure_sent(code, started, refused, too_large, expected):
    assert classify_failure(code, request_started=started, refused_because=refused, too_large=too_large) == expected
