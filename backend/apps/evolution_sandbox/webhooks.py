"""Webhook delivery, as the real server does it (contract §4).

Per instance: only when a webhook is set and enabled, only for subscribed events, to
`<url>/<event-with-dashes>` when `byEvents` is on, with the configured headers verbatim except
`jwt_key`, which becomes `Authorization: Bearer <HS256 JWT>`. v2 retries failures with
exponential backoff and ±20 % jitter, but never after 400/401/403/404/422; v1 sends once, with
no custom headers. Deliveries run on the scheduler's single worker, so a receiver sees events
in the order they happened.
"""
from __future__ import annotations

import json
import logging
import random
import urllib.error
import urllib.request
from typing import Any

from apps.common import hs256

from . import contract
from .scheduler import Scheduler
from .state import SandboxState, now_iso

logger = logging.getLogger(__name__)

NO_RETRY_STATUSES = {400, 401, 403, 404, 422}
# Webhooks go straight to the receiver: no proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class WebhookEmitter:
    def __init__(self, state: SandboxState, scheduler: Scheduler) -> None:
        self.state = state
        self.scheduler = scheduler

    def emit(self, instance_name: str, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """Queue `event` for the instance's webhook; returns the delivery record, if any."""
        instance = self.state.get_instance(instance_name)
        if instance is None or not instance.webhook or not instance.webhook.get("enabled"):
            return None
        webhook = instance.webhook
        if contract.event_config_name(event) not in (webhook.get("events") or []):
            return None
        v1 = instance.api_version == "v1"
        url = webhook["url"].rstrip("/") + "/" + contract.event_path_suffix(event) if webhook.get("byEvents") else webhook["url"]
        config = self.state.config
        envelope = contract.webhook_envelope(
            event=event,
            instance=instance.name,
            data=data,
            destination=webhook["url"],
            sender=f"{instance.owner_number}@s.whatsapp.net",
            server_url=config.server_url,
            apikey=instance.token if config.expose_apikey else None,
            v1=v1,
        )
        headers = {"Content-Type": "application/json"}
        if not v1:
            custom = {str(name): str(value) for name, value in (webhook.get("headers") or {}).items()}
            jwt_key = custom.pop("jwt_key", None)
            headers.update(custom)
            if jwt_key:
                headers["Authorization"] = f"Bearer {hs256.webhook_token(jwt_key)}"
        entry = self.state.log_webhook(
            {
                "instance": instance.name,
                "event": event,
                "url": url,
                "headers": headers,
                "payload": envelope,
                "attempts": 0,
                "status": None,
                "delivered": False,
                "gave_up": False,
                "error": None,
                "at": now_iso(),
            }
        )
        self.scheduler.call_later(0, self._deliver, entry, v1)
        return entry

    def _deliver(self, entry: dict[str, Any], v1: bool) -> None:
        config = self.state.config
        attempt = entry["attempts"] + 1
        body = json.dumps(entry["payload"], ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(entry["url"], data=body, headers=entry["headers"], method="POST")
        status: int | None = None
        error: str | None = None
        try:
            with _opener.open(request, timeout=config.webhook_timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivered = status is not None and 200 <= status < 300
        retry = not delivered and not v1 and status not in NO_RETRY_STATUSES and attempt < config.webhook_retry_attempts
        self.state.update_webhook(
            entry, attempts=attempt, status=status, error=error, delivered=delivered, gave_up=not delivered and not retry
        )
        if delivered:
            return
        logger.info(
            "sandbox webhook delivery failed",
            extra={"event": entry["event"], "url": entry["url"], "status": status, "error": error, "attempt": attempt, "retry": retry},
        )
        if retry:
            delay = min(config.webhook_retry_base * 2 ** (attempt - 1), config.webhook_retry_max)
            self.scheduler.call_later(delay * random.uniform(0.8, 1.2), self._deliver, entry, v1)
