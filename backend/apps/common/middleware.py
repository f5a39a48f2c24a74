"""Project middleware: request ids, API metrics, the body-size limit, and API error pages.

`BodySizeLimitMiddleware` refuses oversized API bodies before anything reads them.

Django only enforces DATA_UPLOAD_MAX_MEMORY_SIZE when `request.body` is read; DRF's JSON parser
reads the stream instead. This middleware answers 413 in the API's error shape from the
Content-Length header, and caps bodies without one (chunked) at the same size.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve

from .exceptions import error_body
from .metrics import API_REQUEST_DURATION, API_REQUESTS
from .request_id import HEADER, META_KEY, bind_request_id, clean_request_id, new_request_id
from .views import api_not_found, api_server_error


class BodySizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            limit = int(settings.API_MAX_BODY_BYTES)
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            too_big = length > limit
            if not too_big and not length and request.method in ("POST", "PUT", "PATCH"):
                too_big = len(request.body) > limit if request.META.get("HTTP_TRANSFER_ENCODING") else False
            if too_big:
                return JsonResponse(
                    error_body(
                        "payload_too_large", f"The request body is larger than {limit} bytes.", {"max_bytes": limit}
                    ),
                    status=413,
                )
        return self.get_response(request)


class RequestIDMiddleware:
    """First in the chain: every response, even a redirect or a 413, carries `X-Request-ID`,
    and every log line written while the request runs has `request_id` (JsonFormatter)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = clean_request_id(request.META.get(META_KEY)) or new_request_id()
        with bind_request_id(request_id):
            response = self.get_response(request)
        response[HEADER] = request_id
        return response


class ApiMetricsMiddleware:
    """`billing_api_requests_total{endpoint,method,status}` and the request duration, for paths
    under /api/. The endpoint label is the route's name, so queue ids in paths never become
    label values; placed before BodySizeLimitMiddleware so its 413s are counted too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        started = time.monotonic()
        response = self.get_response(request)
        endpoint = _route_name(request)
        method = request.method if request.method in _METHODS else "other"
        API_REQUESTS.labels(endpoint=endpoint, method=method, status=str(response.status_code)).inc()
        API_REQUEST_DURATION.labels(endpoint=endpoint).observe(time.monotonic() - started)
        return response


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def _route_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:  # answered before URL resolution (413, redirects)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return "unmatched"
    return match.view_name or "unnamed"


class ApiErrorPagesMiddleware:
    """With DEBUG on (`make run`), Django answers an unknown URL or an unhandled exception with
    its HTML debug page and never calls `handler404`/`handler500`, yet API clients are promised
    the error shape whatever DEBUG says. Last in MIDDLEWARE, so the debug page is replaced before
    the outer middleware add their headers or turn a 404 into an APPEND_SLASH redirect."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code in (404, 500)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return api_not_found(request) if response.status_code == 404 else api_server_error(request)
        return response
