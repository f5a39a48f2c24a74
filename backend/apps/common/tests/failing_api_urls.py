"""The project's routes plus an API view that fails, for the error-page tests."""
from django.http import HttpRequest, HttpResponse
from django.urls import path

from config.urls import handler404, handler500, urlpatterns as project_urlpatterns


def failing_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


urlpatterns = [path("api/v1/billing/failing", failing_view), *project_urlpatterns]
__all__ = ["handler404", "handler500", "urlpatterns"]
