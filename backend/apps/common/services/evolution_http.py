"""Outbound HTTP for the provider client, configured in one place.

One pooled `requests.Session` per process: keep-alive connections to the provider are reused
across calls and threads instead of paying a TCP (and TLS) handshake per message. The session
is re-created after a fork so a child never shares the parent's sockets. Timeouts are not a
session property in `requests`, so `timeouts()` gives the pair every call must pass.
"""
from __future__ import annotations

import os
import threading
import urllib.request
from http.cookiejar import DefaultCookiePolicy

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid: int | None = None

POOL_CONNECTIONS = 10  # distinct provider hosts kept in the pool
POOL_MAXSIZE = 20  # concurrent connections per host (worker threads)


def _build_session() -> requests.Session:
    session = requests.Session()
    # urllib3 retries off: retrying is the service's decision (it knows what is safe to resend).
    adapter = HTTPAdapter(pool_connections=POOL_CONNECTIONS, pool_maxsize=POOL_MAXSIZE, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # Shared by every instance and thread: never let one provider's cookies leak into another call.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    # `requests` reads the whole process environment for proxy settings on every call
    # (`trust_env`): with a large environment that cost more than a local provider call. Read it
    # once here instead. With no proxy variable set, the session ignores the environment (the CA
    # bundle variables `requests` honours are read now); with one, it keeps `requests`' rules,
    # NO_PROXY included.
    if not urllib.request.getproxies_environment():
        session.trust_env = False
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return session


def get_session() -> requests.Session:
    """The process-wide session (created lazily, re-created in a forked child)."""
    global _session, _session_pid
    pid = os.getpid()
    if _session is not None and _session_pid == pid:
        return _session
    with _lock:
        if _session is None or _session_pid != pid:
            _session = _build_session()
            _session_pid = pid
        return _session


def timeouts() -> tuple[float, float]:
    """(connect, read) timeouts in seconds: always passed, so no call can hang forever."""
    return float(settings.EVOLUTION_CONNECT_TIMEOUT), float(settings.EVOLUTION_READ_TIMEOUT)


def default_headers(api_key: str) -> dict[str, str]:
    return {
        "apikey": api_key,
        "User-Agent": settings.EVOLUTION_USER_AGENT,
        "Accept": "application/json",
    }
