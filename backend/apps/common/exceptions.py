"""One error shape for every 4xx the API returns:

    {"error": {"code": "...", "message": "...", "details": ...}}

Services raise `ApplicationError` (a code a client can switch on, a message a person can read);
DRF's own exceptions are translated here too, so clients never see two shapes. Redis being
unreachable (throttles, the API's cache version) is `503 service_unavailable` with
`Retry-After`: a dependency that blinks, not a bug, and the next request after it returns
works again (redis-py reconnects by itself). Anything else stays a 500 and is logged by Django
— never silenced.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(Exception):
    status_code = 400

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}
        if status is not None:
            self.status_code = status


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


_DRF_CODES: dict[type, tuple[str, str]] = {
    drf.ParseError: ("malformed_json", "The request body is not valid JSON."),
    drf.UnsupportedMediaType: ("unsupported_media_type", "Send the body as application/json."),
    drf.MethodNotAllowed: ("method_not_allowed", "This method is not allowed here."),
    drf.NotAcceptable: ("not_acceptable", "This endpoint answers application/json only."),
    drf.NotFound: ("not_found", "Not found."),
    drf.NotAuthenticated: ("missing_api_key", "Send your API key in the X-Billing-API-Key header."),
}


logger = logging.getLogger(__name__)


def service_unavailable(dependency: str) -> ApplicationError:
    retry_after = int(settings.API_UNAVAILABLE_RETRY_AFTER)
    return ApplicationError(
        "service_unavailable",
        f"A service we depend on ({dependency}) is unavailable; retry in {retry_after} s.",
        status=503,
        details={"retry_after": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        logger.warning("redis unavailable: answering 503", extra={"error": type(exc).__name__})
        exc = service_unavailable("redis")
    if isinstance(exc, ApplicationError):
        response = Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
        for name, value in exc.headers.items():
            response[name] = value
        return response
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    drf_response = drf_exception_handler(exc, context)
    if drf_response is None or not isinstance(exc, drf.APIException):  # DRF answers its own exceptions only
        return None  # a real bug: Django logs it and answers 500
    code, message, details = _describe(exc)
    drf_response.data = error_body(code, message, details)
    return drf_response


def _describe(exc: drf.APIException) -> tuple[str, str, Any]:
    if isinstance(exc, drf.ValidationError):
        return "validation_error", "The request is not valid; see details.", exc.detail
    if isinstance(exc, drf.Throttled):
        wait = math.ceil(exc.wait or 1)  # type: ignore[attr-defined]  # set by __init__; the DRF stubs omit it
        return "rate_limited", f"Too many requests; retry in {wait} s.", {"retry_after": wait}
    for klass, (code, message) in _DRF_CODES.items():
        if isinstance(exc, klass):
            return code, message, None
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else getattr(exc, "default_code", "error")
    return str(code), str(exc.detail), None
