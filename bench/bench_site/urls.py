"""Every product route, plus `bench/bare-insert`."""

from django.urls import path

from config.urls import handler404, handler500  # noqa: F401 - re-exported: Django reads the error handlers from the URLconf
from config.urls import urlpatterns as product_urlpatterns

from .views import bare_insert

urlpatterns = [*product_urlpatterns, path("bench/bare-insert", bare_insert, name="bench-bare-insert")]
