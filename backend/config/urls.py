"""Top-level routes. Each app owns its own `urls.py`; this file only mounts them."""
from django.contrib import admin
from django.urls import include, path

from apps.common.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/billing/", include("apps.billing.urls")),
]

handler404 = "apps.common.views.api_not_found"
handler500 = "apps.common.views.api_server_error"
