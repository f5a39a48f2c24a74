"""Process-level endpoints that need no authentication."""
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness only: the process answers. Dependencies are checked by readiness, not here,
    so that a database blip does not make the platform kill healthy web processes."""
    return JsonResponse({"status": "ok"})


def api_not_found(request: HttpRequest, exception: Exception | None = None):
    """404 for unknown routes: the API's JSON error shape under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "not_found", "message": "Not found.", "details": None}}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def api_server_error(request: HttpRequest):
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": {"code": "internal_error", "message": "Internal error; it has been logged.", "details": None}},
            status=500,
        )
    from django.views.defaults import server_error

    return server_error(request)
