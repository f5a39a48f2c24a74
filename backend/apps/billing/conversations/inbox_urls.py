"""Staff inbox routes, mounted at `/inbox/` by config/urls.py."""

from django.urls import path

from . import inbox_views

app_name = "billing-inbox"
urlpatterns = [
    path("", inbox_views.inbox, name="list"),
    path("login/", inbox_views.InboxLoginView.as_view(), name="login"),
    path("logout/", inbox_views.InboxLogoutView.as_view(), name="logout"),
    path("ws-token", inbox_views.ws_token, name="ws-token"),
    path("partials/list", inbox_views.inbox_list_partial, name="list-partial"),
    path("<int:conversation_id>/", inbox_views.thread, name="thread"),
    path("<int:conversation_id>/partial", inbox_views.thread_partial, name="thread-partial"),
    path("<int:conversation_id>/reply", inbox_views.reply, name="reply"),
    path("<int:conversation_id>/resolve", inbox_views.resolve, name="resolve"),
]
