"""The project's routes plus API views that fail, for the error-page tests: a plain Django view
and DRF views raising a bug or Django's own exceptions."""

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import handler404, handler500
from config.urls import urlpatterns as project_urlpatterns


def failing_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


class RaisingAPIView(APIView):
    raises: type[Exception] = RuntimeError

    def get(self, request: Request) -> Response:
        raise self.raises("raised by the view")


urlpatterns = [
    path("api/v1/billing/failing", failing_view),
    path("api/v1/billing/failing-drf", RaisingAPIView.as_view()),
    path("api/v1/billing/missing-drf", RaisingAPIView.as_view(raises=Http404)),
    path("api/v1/billing/forbidden-drf", RaisingAPIView.as_view(raises=PermissionDenied)),
    *project_urlpatterns,
]
__all__ = ["handler404", "handler500", "urlpatterns"]
