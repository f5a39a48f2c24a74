"""Prometheus metrics of the shared services, defined once (importing twice must not
re-register). Labels are bounded: operation and outcome are small fixed sets; instance_id is
allowed on the breaker gauge only because a deployment has a handful of instances."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVOLUTION_REQUESTS = Counter(
    "evolution_requests_total",
    "Attempts at a provider operation (send_text, connection_state) by outcome. send_text: ok, "
    "invalid_number, unavailable, rate_limited, auth, ambiguous, transient, circuit_open (the last, and "
    "invalid_number for unparseable phones, make no HTTP request). connection_state: healthy, "
    "unhealthy, auth, timeout, unavailable.",
    ["operation", "outcome"],
)

EVOLUTION_REQUEST_DURATION = Histogram(
    "evolution_request_duration_seconds",
    "Wall time of one HTTP request to the WhatsApp provider (each attempt separately).",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

EVOLUTION_BREAKER_STATE = Gauge(
    "evolution_circuit_breaker_state",
    "Per-instance circuit breaker as last seen by this process: 0 closed, 1 half-open, 2 open.",
    ["instance_id"],
)

# --------------------------------------------------------------------------- public API requests
# Counted by `apps.common.middleware.ApiMetricsMiddleware` for paths under /api/. `endpoint` is
# the URL route's name (`billing:send-overdue`), never the raw path (which holds queue ids);
# requests that match no route share `unmatched`.
API_REQUESTS = Counter(
    "billing_api_requests_total",
    "Public API requests by route name and HTTP status code.",
    ["endpoint", "method", "status"],
)

API_REQUEST_DURATION = Histogram(
    "billing_api_request_duration_seconds",
    "Wall time of one public API request, by route name.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
