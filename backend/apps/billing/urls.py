"""Billing API routes (`/api/v1/billing/`)."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from . import progress_views, views, waha_webhook_views, webhook_views
from .conversations import api as conversations_api

app_name = "billing"
urlpatterns = [
    path("send/overdue", views.SendOverdueView.as_view(), name="send-overdue"),
    path("send/upcoming", views.SendUpcomingView.as_view(), name="send-upcoming"),
    path("send/notification", views.SendNotificationView.as_view(), name="send-notification"),
    path("queue/<str:queue_id>/status", views.QueueStatusView.as_view(), name="queue-status"),
    path("queue/<str:queue_id>/control", views.QueueControlView.as_view(), name="queue-control"),
    path("queue/<str:queue_id>/contacts", views.QueueContactsView.as_view(), name="queue-contacts"),
    path("queue/<str:queue_id>/ws-token", progress_views.QueueWsTokenView.as_view(), name="queue-ws-token"),
    path("conversations", conversations_api.ConversationListView.as_view(), name="conversations"),
    path(
        "conversations/<str:conversation_id>",
        conversations_api.ConversationDetailView.as_view(),
        name="conversation-detail",
    ),
    path(
        "conversations/<str:conversation_id>/messages",
        conversations_api.ConversationMessagesView.as_view(),
        name="conversation-messages",
    ),
    path(
        "conversations/<str:conversation_id>/resolve",
        conversations_api.ConversationResolveView.as_view(),
        name="conversation-resolve",
    ),
    # Provider webhooks; the token is the instance's webhook secret. The optional last segment
    # is the event, for Evolution's `byEvents` mode (`<url>/messages-update`).
    re_path(
        r"^webhooks/evolution/(?P<token>[^/]+)/(?:/?(?P<event>[a-z0-9-]+)/?)?$",
        webhook_views.EvolutionWebhookView.as_view(),
        name="evolution-webhook",
    ),
    path("webhooks/waha/<str:token>/", waha_webhook_views.WAHAWebhookView.as_view(), name="waha-webhook"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="billing:schema"), name="swagger"),
    path("redoc/", SpectacularRedocView.as_view(url_name="billing:schema"), name="redoc"),
]
