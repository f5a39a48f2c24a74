"""Where a request came from, decided once.

Behind a proxy the TCP peer (`REMOTE_ADDR`) is the proxy. `TRUSTED_PROXY_HOPS` says how many
proxies we run in front of the app (Railway: 1); the client is the address that the outermost
trusted proxy appended to `X-Forwarded-For`. Entries to the left of it were written by the
client itself and are ignored, so a spoofed header cannot choose the IP we throttle or allow.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    hops = int(getattr(settings, "TRUSTED_PROXY_HOPS", 0))
    remote = request.META.get("REMOTE_ADDR", "") or "0.0.0.0"
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
