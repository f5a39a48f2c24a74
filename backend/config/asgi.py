"""ASGI entry point: HTTP through Django, WebSocket through Channels.

Every HTTP request first meets `RequestBodyLimit` (apps/common/asgi_body_limit.py): a body over
API_MAX_BODY_BYTES is refused with 413 before it is read, chunked or not, on every route.

WebSocket authentication is by API key header or signed token (apps/billing/consumers.py), never
by cookie, so cross-site WebSocket hijacking has nothing to ride on; the Origin check below is
defence in depth: a browser's Origin must be one of ALLOWED_HOSTS, while server-to-server
clients (no Origin header) pass on to the key check.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs Django set up first
from channels.security.websocket import OriginValidator  # noqa: E402 - as above
from django.conf import settings  # noqa: E402 - as above

from apps.billing.routing import websocket_urlpatterns  # noqa: E402 - as above
from apps.common.asgi_body_limit import RequestBodyLimit  # noqa: E402 - as above


class BrowserOriginValidator(OriginValidator):
    """Channels' OriginValidator refuses a missing Origin; here only a present, foreign one is refused."""

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)


def _allowed_origins() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    return hosts or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])


application = ProtocolTypeRouter(
    {
        "http": RequestBodyLimit(django_asgi_app),
        # The routes are Django path()s to ASGI apps, which the stubs do not expect (apps/billing/routing.py).
        "websocket": BrowserOriginValidator(URLRouter(websocket_urlpatterns), _allowed_origins()),  # type: ignore[arg-type]
    }
)
