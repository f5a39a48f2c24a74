"""Webhook delivery, as each real server does it.

Evolution (contract §4), per instance: only when a webhook is set and enabled, only for
subscribed events, to `<url>/<event-with-dashes>` when `byEvents` is on, with the configured
headers verbatim except `jwt_key`, which becomes `Authorization: Bearer <HS256 JWT>`. v2 retries
failures with exponential backoff and ±20 % jitter, but never after 400/401/403/404/422; v1
sends once, with no custom headers.

WAHA (contract §6), per session: every hook of `config.webhooks[]` subscribed to the event (or
to `*`), signed with `X-Webhook-Hmac` when the hook has an `hmac.key` (the body is serialised
once, so the signature covers exactly the bytes sent), retried per its `retries` policy.

Deliveries run on the scheduler's single worker, so a receiver sees events in the order they
happened.
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request
from typing import Any

import jwt

from . import contract, waha_contract
from .scheduler import Scheduler
from .state import SandboxInstance, SandboxState, now_iso

logger = logging.getLogger(__name__)

NO_RETRY_STATUSES = {400, 401, 403, 404, 422}
# Webhooks go straight to the receiver: no proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def webhook_token(key: str) -> str:
    """The token Evolution sends with webhooks when the webhook's headers name a `jwt_key`
    (contract §4, `generateJwtToken()`): HS256, `{iat, exp: iat+600, app, action}`."""
    iat = int(time.time())
    return jwt.encode({"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}, key, algorithm="HS256")


class WebhookEmitter:
    def __init__(self, state: SandboxState, scheduler: Scheduler) -> None:
        self.state = state
        self.scheduler = scheduler

    def emit(self, instance_name: str, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Queue `event` for the instance's webhook(s); returns the delivery records."""
        instance = self.state.get_instance(instance_name)
        if instance is None:
            return []
        if instance.provider == "waha":
            return self._emit_waha(instance, event, data)
        entry = self._emit_evolution(instance, event, data)
        return [entry] if entry is not None else []

    # ------------------------------------------------------------------ Evolution
    def _emit_evolution(self, instance: SandboxInstance, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        if not instance.webhook or not instance.webhook.get("enabled"):
            return None
        webhook = instance.webhook
        if contract.event_config_name(event) not in (webhook.get("events") or []):
            return None
        v1 = instance.api_version == "v1"
        url = (
            webhook["url"].rstrip("/") + "/" + contract.event_path_suffix(event)
            if webhook.get("byEvents")
            else webhook["url"]
        )
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
                headers["Authorization"] = f"Bearer {webhook_token(jwt_key)}"
        retry = {
            "attempts": 1 if v1 else config.webhook_retry_attempts,
            "base": config.webhook_retry_base,
            "max": config.webhook_retry_max,
            "no_retry": sorted(NO_RETRY_STATUSES),
        }
        return self._queue(instance, event, url, headers, envelope, json.dumps(envelope, ensure_ascii=False), retry)

    # ------------------------------------------------------------------ WAHA
    def _emit_waha(self, instance: SandboxInstance, event: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
        entries = []
        for hook in instance.session_config.get("webhooks") or []:
            events = hook.get("events") or []
            if event not in events and "*" not in events:
                continue
            envelope = waha_contract.envelope(
                event=event,
                session=instance.name,
                payload=payload,
                owner_number=instance.owner_number,
                profile_name=instance.profile_name,
            )
            body = json.dumps(envelope, ensure_ascii=False)
            headers = waha_contract.webhook_headers(
                body=body.encode("utf-8"), hmac_key=(hook.get("hmac") or {}).get("key")
            )
            for custom in hook.get("customHeaders") or []:
                headers[str(custom.get("name"))] = str(custom.get("value"))
            policy = hook.get("retries") or {}
            delay = float(policy.get("delaySeconds") or 2)
            exponential = policy.get("policy", "exponential") == "exponential"
            retry = {
                "attempts": int(policy.get("attempts") or 1),
                "base": delay,
                "max": 300.0 if exponential else delay,
                "no_retry": sorted(waha_contract.NO_RETRY_STATUSES),
            }
            entries.append(self._queue(instance, event, hook["url"], headers, envelope, body, retry))
        return entries

    # ------------------------------------------------------------------ delivery
    def _queue(
        self,
        instance: SandboxInstance,
        event: str,
        url: str,
        headers: dict[str, str],
        envelope: dict[str, Any],
        body: str,
        retry: dict[str, Any],
    ) -> dict[str, Any]:
        entry = self.state.log_webhook(
            {
                "instance": instance.name,
                "provider": instance.provider,
                "event": event,
                "url": url,
                "headers": headers,
                "payload": envelope,
                "body": body,
                "retry": retry,
                "attempts": 0,
                "status": None,
                "delivered": False,
                "gave_up": False,
                "error": None,
                "at": now_iso(),
            }
        )
        self.scheduler.call_later(0, self._deliver, entry)
        return entry

    def _deliver(self, entry: dict[str, Any]) -> None:
        config = self.state.config
        retry = entry["retry"]
        attempt = entry["attempts"] + 1
        request = urllib.request.Request(
            entry["url"], data=entry["body"].encode("utf-8"), headers=entry["headers"], method="POST"
        )
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
        again = not delivered and status not in retry["no_retry"] and attempt < retry["attempts"]
        self.state.update_webhook(
            entry,
            attempts=attempt,
            status=status,
            error=error,
            delivered=delivered,
            gave_up=not delivered and not again,
        )
        if delivered:
            return
        logger.info(
            "sandbox webhook delivery failed",
            extra={
                "event": entry["event"],
                "url": entry["url"],
                "status": status,
                "error": error,
                "attempt": attempt,
                "retry": again,
            },
        )
        if again:
            delay = min(retry["base"] * 2 ** (attempt - 1), retry["max"])
            self.scheduler.call_later(delay * random.uniform(0.8, 1.2), self._deliver, entry)
