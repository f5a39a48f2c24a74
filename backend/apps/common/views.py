"""Process-level endpoints: health (no authentication) and metrics (token or allow-list)."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found, server_error

from apps.common.exceptions import error_body
from apps.common.health import readiness
from apps.common.http import client_ip
from apps.common.metrics_exporter import metrics_access_allowed, render_metrics


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness only: the process answers. Dependencies are checked by readiness, not here,
    so that a database blip does not make the platform kill healthy web processes."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: PostgreSQL, Redis and RabbitMQ answer (503 when one does not), plus the last
    heartbeat of each consumer/periodic process (reported, never a 503: see common/health.py).
    No secrets in the answer: component names, latencies and exception class names only."""
    status, body = readiness()
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape of the web process (all gunicorn workers in multiprocess mode)."""
    if not metrics_access_allowed(client_ip(request), request.META.get("HTTP_AUTHORIZATION")):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    body, content_type = render_metrics(request.META.get("HTTP_ACCEPT"))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


def api_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for unknown routes: the API's JSON error shape under /api/, Django's page elsewhere.
    Django calls it with DEBUG off only; `ApiErrorPagesMiddleware` calls it with DEBUG on."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return page_not_found(request, exception)


def api_server_error(request: HttpRequest) -> HttpResponse:
    """500: the API's JSON error shape under /api/ (the traceback is in the log), Django's page
    elsewhere. Like `api_not_found`, also called by `ApiErrorPagesMiddleware` with DEBUG on."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("internal_error", "Internal error; it has been logged."), status=500)
    return server_error(request)
