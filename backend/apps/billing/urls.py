"""Billing API routes (`/api/v1/billing/`)."""
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from . import views

app_name = "billing"
urlpatterns = [
    path("send/overdue", views.SendOverdueView.as_view(), name="send-overdue"),
    path("send/upcoming", views.SendUpcomingView.as_view(), name="send-upcoming"),
    path("send/notification", views.SendNotificationView.as_view(), name="send-notification"),
    path("queue/<str:queue_id>/status", views.QueueStatusView.as_view(), name="queue-status"),
    path("queue/<str:queue_id>/control", views.QueueControlView.as_view(), name="queue-control"),
    path("queue/<str:queue_id>/contacts", views.QueueContactsView.as_view(), name="queue-contacts"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="billing:schema"), name="swagger"),
    path("redoc/", SpectacularRedocView.as_view(url_name="billing:schema"), name="redoc"),
]
