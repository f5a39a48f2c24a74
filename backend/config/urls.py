"""Top-level routes. Each app owns its own `urls.py`; this file only mounts them."""

from django.contrib import admin
from django.urls import include, path

from apps.billing.progress_views import progress_page
from apps.common.views import healthz, metrics, readyz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("billing/progress/<str:queue_id>/", progress_page, name="billing-progress-page"),
    path("inbox/", include("apps.billing.conversations.inbox_urls")),
    path("admin/", admin.site.urls),
    path("api/v1/billing/", include("apps.billing.urls")),
    path("api/v1/billing/", include("apps.charges.urls")),
    path("api/v1/billing/", include("apps.privacy.urls")),
]

handler404 = "apps.common.views.api_not_found"
handler500 = "apps.common.views.api_server_error"
