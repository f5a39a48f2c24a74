"""How Prometheus reads the metrics of each process (docs/operations.md, "Metrics").

One rule: **every process exposes its own metrics; Prometheus scrapes each one.**

- The web process answers `GET /metrics` (a Django view). Under gunicorn with several workers
  the workers are separate processes, so the web runs prometheus-client's *multiprocess mode*:
  `deploy/gunicorn.conf.py` sets `PROMETHEUS_MULTIPROC_DIR` (each worker writes its samples
  to files there) and the view merges them with `MultiProcessCollector`. A single-process
  server (`uvicorn` in `make run`) leaves the variable unset and serves the default registry.
- `run_billing_consumer` and `run_billing_periodic_tasks` call `start_metrics_server()`, which
  serves `/metrics` (and `/healthz`, this process's own heartbeat) on `METRICS_PORT` from a
  daemon thread. They never set `PROMETHEUS_MULTIPROC_DIR`: one process, one registry.

Every `/metrics` is protected the same way: a request passes with
`Authorization: Bearer <METRICS_TOKEN>` or from an address in `METRICS_ALLOWED_IPS`
(IPs/CIDRs; loopback by default). Nothing configured and not loopback: 403.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import ThreadingWSGIServer, choose_encoder

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


# --------------------------------------------------------------------------- access
def _networks(values: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            logger.warning("METRICS_ALLOWED_IPS: ignoring an invalid entry", extra={"entry": value[:60]})
    return networks


def metrics_access_allowed(client_ip: str, authorization: str | None) -> bool:
    """The bearer token matches, or the client address is allow-listed."""
    token = str(getattr(settings, "METRICS_TOKEN", "") or "")
    if token and authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(getattr(settings, "METRICS_ALLOWED_IPS", [])))


# --------------------------------------------------------------------------- payload
def metrics_registry() -> Any:
    """The registry to expose: merged across processes in multiprocess mode, else this one's."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        return registry
    return REGISTRY


def render_metrics(accept: str | None) -> tuple[bytes, str]:
    """Body and content type for a scrape (OpenMetrics when Prometheus asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(metrics_registry()), content_type


# --------------------------------------------------------------------------- side server
class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: scrapes every 15 s would drown the process's JSON logs."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def _exporter_app(liveness: Callable[[], tuple[bool, dict[str, Any]]]) -> WSGIApplication:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            import json

            alive, report = liveness()
            start_response("200 OK" if alive else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [json.dumps(report).encode()]
        if path not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if not metrics_access_allowed(environ.get("REMOTE_ADDR", ""), environ.get("HTTP_AUTHORIZATION")):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"forbidden\n"]
        body, content_type = render_metrics(environ.get("HTTP_ACCEPT"))
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return app


class MetricsServer:
    """A running side exporter; `close()` stops it (tests, clean shutdown)."""

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self.httpd = httpd
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_metrics_server(kind: str, *, port: int | None = None, addr: str | None = None) -> MetricsServer | None:
    """Serve this process's `/metrics` and `/healthz` on `METRICS_PORT` (unset or 0: off).

    Call once at the start of a non-web process (`kind` = "consumer" or "periodic"). A port
    that is taken is logged, never fatal: metrics must not stop the sending.
    """
    from apps.common.health import local_liveness

    if port is None:  # from the settings; an explicit 0 (tests) binds a free port
        port = int(getattr(settings, "METRICS_PORT", 0) or 0)
        if port <= 0:
            return None
    host = addr if addr is not None else str(getattr(settings, "METRICS_ADDR", "127.0.0.1"))

    class _Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        httpd = make_server(
            host, port, _exporter_app(lambda: local_liveness(kind)), _Server, handler_class=_QuietHandler
        )
    except OSError as exc:
        logger.error("metrics exporter could not start", extra={"port": port, "error": type(exc).__name__})
        return None
    thread = threading.Thread(target=httpd.serve_forever, name=f"metrics-{kind}", daemon=True)
    thread.start()
    server = MetricsServer(httpd, thread)
    logger.info("metrics exporter listening", extra={"kind": kind, "addr": host, "port": server.port})
    return server
