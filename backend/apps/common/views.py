"""Process-level endpoints that need no authentication."""
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness only: the process answers. Dependencies are checked by readiness, not here,
    so that a database blip does not make the platform kill healthy web processes."""
    return JsonResponse({"status": "ok"})
