"""Refuse oversized API bodies before anything reads them.

Django only enforces DATA_UPLOAD_MAX_MEMORY_SIZE when `request.body` is read; DRF's JSON parser
reads the stream instead. This middleware answers 413 in the API's error shape from the
Content-Length header, and caps bodies without one (chunked) at the same size.
"""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .exceptions import error_body


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
                    error_body("payload_too_large", f"The request body is larger than {limit} bytes.",
                               {"max_bytes": limit}),
                    status=413,
                )
        return self.get_response(request)
