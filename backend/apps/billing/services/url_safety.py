"""Is a client's callback URL safe to call from inside our network? (SSRF rules)

A callback URL is refused when its host is, or resolves to, an address a stranger must not
reach through us: loopback, private (RFC 1918, fc00::/7), link-local (169.254/16 — where cloud
metadata lives — and fe80::/10), shared (100.64/10), multicast, reserved or unspecified; IPv6
forms that embed an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64) are judged by that address.
One bad address among several refuses the name: we do not pick the "good" one.

The check runs twice: when the URL is registered (`validate_callback_url`, no connection) and
when a callback is sent. At send time a hostname could resolve differently than it did a second
ago (DNS rebinding), so `guarded_session()` also checks the address of every socket it opens,
after connecting and before a byte is sent. Redirects are never followed by the callers.

`settings.BILLING_CALLBACK_ALLOW_PRIVATE` turns the address rules off (tests that run a
receiver on 127.0.0.1; a closed on-premises network). It is off by default.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
# Metadata endpoints, named so the refusal says what it is (they are link-local/ULA anyway).
METADATA_ADDRESSES = frozenset({
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
})


class UnsafeCallbackURL(ValueError):
    """The URL may not be called. `code` is machine-readable: `unsafe_callback_url` (bad
    scheme/host or an address the rules refuse) or `unresolvable_callback_url` (DNS found nothing:
    not unsafe in itself, but nothing can be sent)."""

    def __init__(self, message: str, *, code: str = "unsafe_callback_url") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def private_allowed() -> bool:
    return bool(getattr(settings, "BILLING_CALLBACK_ALLOW_PRIVATE", False))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # (server, client): the client is the host actually reached
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` may not be called, or None when it is a public unicast address."""
    if ip in METADATA_ADDRESSES:
        return "cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            problem = address_problem(embedded)
            return f"IPv6 form of an IPv4 {problem}" if problem else None
    checks = (
        (ip.is_loopback, "loopback address"),
        (ip.is_unspecified, "unspecified address"),
        (ip.is_link_local, "link-local address"),
        (ip.is_multicast, "multicast address"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "shared (carrier-grade NAT) address"),
        (ip.is_private, "private address"),
        (ip.is_reserved, "reserved address"),
        (not ip.is_global, "non-global address"),
    )
    for failed, problem in checks:
        if failed:
            return problem
    return None


def _parse(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeCallbackURL("The callback URL cannot be parsed.") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeCallbackURL("The callback URL must be http or https.")
    host = parts.hostname
    if not host:
        raise UnsafeCallbackURL("The callback URL has no host.")
    return host, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UnsafeCallbackURL("The callback URL's host does not resolve.", code="unresolvable_callback_url") from exc
    addresses = []
    for info in infos:
        # sockaddr[0] may carry an IPv6 zone ("fe80::1%eth0"): the zone is not part of the address.
        addresses.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
    if not addresses:
        raise UnsafeCallbackURL("The callback URL's host does not resolve.", code="unresolvable_callback_url")
    return addresses


def validate_callback_url(url: str) -> None:
    """Raise `UnsafeCallbackURL` unless `url` is http(s) and every address of its host is public."""
    host, port = _parse(url)
    if private_allowed():
        return
    for ip in resolve(host, port):
        problem = address_problem(ip)
        if problem:
            raise UnsafeCallbackURL(f"The callback URL points to a {problem}; use a public address.")


# ----------------------------------------------------------------------------- send-time guard
def _check_socket(sock: socket.socket) -> None:
    if private_allowed():
        return
    peer = sock.getpeername()[0]
    problem = address_problem(ipaddress.ip_address(str(peer).split("%", 1)[0]))
    if problem:
        sock.close()
        raise UnsafeCallbackURL(f"The callback host connected to a {problem}; refused.")


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_socket(sock)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _check_socket(sock)
        return sock


class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPConnectionPool,
                                                   "https": _GuardedHTTPSConnectionPool}


_lock = threading.Lock()
_session: requests.Session | None = None


def guarded_session() -> requests.Session:
    """A process-wide session whose every connection is address-checked. No proxies from the
    environment (a proxy would be the peer we check), no retries, no cookies kept."""
    global _session
    with _lock:
        if _session is None:
            session = requests.Session()
            session.trust_env = False
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            adapter = _GuardedAdapter(max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _session = session
        return _session
