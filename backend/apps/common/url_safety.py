"""May we call this address from inside our network? (SSRF rules for every outbound URL)

Two kinds of URL come from people we do not fully trust: a client's callback URL and a
WhatsApp instance's provider `base_url`. Both are refused when their host is, or resolves to,
an address a stranger must not reach through us: loopback, private (RFC 1918, fc00::/7),
link-local (169.254/16, where cloud metadata lives, and fe80::/10), shared (100.64/10),
multicast, reserved or unspecified; IPv6 forms that embed an IPv4 address (IPv4-mapped, 6to4,
Teredo, NAT64) are judged by that address. One bad address among several refuses the name: we
do not pick the "good" one.

The check runs twice: when the URL is saved (`validate_url`, DNS only) and on every connection
(`AddressPolicy.problem` on the resolved address the HTTP client is about to connect to, see
apps/common/http_client.py), so a name that resolves differently a second later (DNS
rebinding) gains nothing.

Policies: callbacks follow `BILLING_CALLBACK_ALLOW_PRIVATE` (all rules off: tests, a closed
on-premises network); providers follow `EVOLUTION_ALLOWED_NETWORKS`, the operator's allow-list
of networks (CIDRs) where self-hosted Evolution servers live. Neither is editable by a tenant.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
# Metadata endpoints, named so the refusal says what it is (they are link-local/ULA anyway).
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)

CALLBACK = "callback"
PROVIDER = "provider"


class UnsafeURL(ValueError):
    """The URL may not be called. `code` is machine-readable: `unsafe_<kind>_url` (bad scheme or
    host, or an address the rules refuse) or `unresolvable_<kind>_url` (DNS found nothing: not
    unsafe in itself, but nothing can be sent)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AddressPolicy:
    """Which peer addresses a kind of outbound call may reach."""

    kind: str  # CALLBACK or PROVIDER: names the error codes
    allow_all: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def problem(self, ip: IPAddress | str) -> str | None:
        """Why `ip` may not be called under this policy, or None."""
        if self.allow_all:
            return None
        address = ipaddress.ip_address(str(ip).split("%", 1)[0]) if isinstance(ip, str) else ip
        if any(address.version == network.version and address in network for network in self.allowed_networks):
            return None
        return address_problem(address)

    @property
    def unsafe_code(self) -> str:
        return f"unsafe_{self.kind}_url"

    @property
    def unresolvable_code(self) -> str:
        return f"unresolvable_{self.kind}_url"


def callback_policy() -> AddressPolicy:
    return AddressPolicy(CALLBACK, allow_all=bool(getattr(settings, "BILLING_CALLBACK_ALLOW_PRIVATE", False)))


def provider_policy() -> AddressPolicy:
    networks = tuple(ipaddress.ip_network(value, strict=False) for value in settings.EVOLUTION_ALLOWED_NETWORKS)
    return AddressPolicy(PROVIDER, allowed_networks=networks)


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


def _parse(url: str, policy: AddressPolicy) -> tuple[str, int]:
    label = f"The {policy.kind} URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"{label} cannot be parsed.", code=policy.unsafe_code) from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL(f"{label} must be http or https.", code=policy.unsafe_code)
    host = parts.hostname
    if not host:
        raise UnsafeURL(f"{label} has no host.", code=policy.unsafe_code)
    return host, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int, *, policy: AddressPolicy) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    unresolvable = UnsafeURL(f"The {policy.kind} URL's host does not resolve.", code=policy.unresolvable_code)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise unresolvable from exc
    # sockaddr[0] may carry an IPv6 zone ("fe80::1%eth0"): the zone is not part of the address.
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise unresolvable
    return addresses


def validate_url(url: str, *, policy: AddressPolicy) -> None:
    """Raise `UnsafeURL` unless `url` is http(s) and every address of its host passes `policy`."""
    host, port = _parse(url, policy)
    if policy.allow_all:
        return
    for ip in resolve(host, port, policy=policy):
        problem = policy.problem(ip)
        if problem:
            raise UnsafeURL(
                f"The {policy.kind} URL points to a {problem}; use a public address.", code=policy.unsafe_code
            )


def validate_callback_url(url: str) -> None:
    """A client's callback URL (request `callback_url`, tenant default)."""
    validate_url(url, policy=callback_policy())


def validate_provider_url(url: str) -> None:
    """A WhatsApp instance's provider `base_url`."""
    validate_url(url, policy=provider_policy())
