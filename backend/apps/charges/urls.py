"""Charges API routes, mounted under `/api/v1/billing/` beside billing's own."""

from django.urls import path

from apps.charges import views, webhook_views

app_name = "charges"
urlpatterns = [
    path("charges", views.ChargesView.as_view(), name="charges"),
    # Installment ids often hold a "/" ("1001/3"): `path`, with the actions matched first.
    path("charges/<path:external_id>/pay", views.PayChargeView.as_view(), name="charge-pay"),
    path("charges/<path:external_id>/cancel", views.CancelChargeView.as_view(), name="charge-cancel"),
    path("charges/<path:external_id>/write-off", views.WriteOffChargeView.as_view(), name="charge-write-off"),
    path("charges/<path:external_id>/reopen", views.ReopenChargeView.as_view(), name="charge-reopen"),
    path("charges/<path:external_id>", views.ChargeDetailView.as_view(), name="charge-detail"),
    path("cadences", views.CadencesView.as_view(), name="cadences"),
    path("cadences/<str:name>", views.CadenceDetailView.as_view(), name="cadence-detail"),
    path("reports/recovery", views.RecoveryReportView.as_view(), name="recovery-report"),
    path("webhooks/asaas/<str:token>", webhook_views.AsaasWebhookView.as_view(), name="asaas-webhook"),
]
