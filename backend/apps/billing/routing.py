"""WebSocket routes of the billing app (mounted by config/asgi.py)."""

from django.urls import path

from .consumers import QueueProgressConsumer
from .conversations.consumers import InboxConsumer

# `str`, not `uuid`: a malformed id must reach the consumer and get its 4404, not a routing error.
websocket_urlpatterns = [
    # Channels routes ASGI apps through Django's path(); django-stubs type its view as a Django view.
    path("ws/billing/queues/<str:queue_id>/", QueueProgressConsumer.as_asgi(), name="ws-queue-progress"),  # type: ignore[arg-type]
    path("ws/billing/inbox/", InboxConsumer.as_asgi(), name="ws-inbox"),  # type: ignore[arg-type]
]
