"""EvolutionAPIService: the provider client for Evolution API v2 (and v1 sends).

Callers get it from `provider.client_for(instance)` and use the interface of
`provider_client.ProviderClient`; nothing else in the project builds Evolution URLs or reads
Evolution bodies. Every call has a total deadline (apps/common/http_client.py).

    client = client_for(instance)                                   # an EvolutionAPIService
    result = client.send("+55 11 99876-5432", "Sua fatura vence amanhã.")   # SendResult, key.id
    client.find_messages("+55 11 99876-5432", sent_after=..., sent_before=...)  # reconciliation
    client.pairing_state()                                          # connected, or the QR to scan

The contract this client follows is docs/evolution-api-contract.md; docs/providers.md
explains retries, the circuit breaker and what a caller does with each error.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from apps.common.http_client import HTTPCallError
from apps.contacts.utils import mask_phone

from .evolution_lookup import (
    MessageLookup,
    ProviderMessage,
    find_messages_body,
    jid_candidates,
    parse_find_messages,
)
from .evolution_responses import error_for_lookup_response, error_for_send_response
from .provider_client import (
    HEALTH_CLOSE,
    HEALTH_CONNECTING,
    HEALTH_ERROR,
    HEALTH_OPEN,
    HEALTH_PAIRING,
    HEALTH_UNKNOWN,
    HealthResult,
    PairingState,
    ProviderClient,
    SendResult,
    backoff_delay,
)
from .provider_errors import (
    AmbiguousSendError,
    CircuitOpenError,
    InstanceUnavailableError,
    InvalidNumberError,
    ProviderAuthError,
    ProviderError,
    ProviderLookupError,
    ProviderRateLimitedError,
    TransientProviderError,
    UnsafeProviderAddressError,
)
from .provider_http import LOOKUP, SEND, connect_timeout, deadline, provider_client
from .provider_responses import error_for_lookup_transport

_PROVIDER_STATE_TO_HEALTH = {
    "open": HEALTH_OPEN,
    "connecting": HEALTH_CONNECTING,
    "close": HEALTH_CLOSE,
    "refused": HEALTH_CLOSE,
}
# Events our webhook needs (contract §4): receipts, echoes, replies, connection changes, logouts.
WEBHOOK_EVENTS = ["MESSAGES_UPSERT", "MESSAGES_UPDATE", "SEND_MESSAGE", "CONNECTION_UPDATE", "LOGOUT_INSTANCE"]
INTEGRATION = "WHATSAPP-BAILEYS"


class EvolutionAPIService(ProviderClient):
    name = "evolution"
    auth_header = "apikey"

    # ------------------------------------------------------------------ health
    def check_health(self) -> HealthResult:
        """`GET /instance/connectionState/{instance}`: healthy iff `state == "open"`.

        Never raises for provider problems: a missing state, 404, 401, a timeout or a refused
        connection is an unhealthy result with the reason kept. Not gated by the circuit
        breaker: health checks are how recovery is noticed, so a healthy answer ends an open
        breaker's cool-down (the next send is its single probe).
        """
        started = time.monotonic()
        response = self._health_answer(self._url("instance/connectionState"), started)
        if isinstance(response, HealthResult):
            return response
        status = response.status
        body = response.json()
        inner = body.get("instance") if isinstance(body, dict) else None
        provider_state = inner.get("state") if isinstance(inner, dict) else None
        if provider_state == "open":
            return self._healthy(started, status, provider_state)
        if not provider_state:
            return self._health(
                False, HEALTH_UNKNOWN, "the provider reported no state (instance not loaded)", started, status
            )
        health = _PROVIDER_STATE_TO_HEALTH.get(str(provider_state), HEALTH_ERROR)
        return self._health(
            False, health, f"provider state is {provider_state!r}", started, status, provider_state=str(provider_state)
        )

    # ------------------------------------------------------------------ reconciliation
    def find_messages(
        self,
        phone: str,
        *,
        sent_after: datetime | None = None,
        sent_before: datetime | None = None,
        from_me: bool = True,
        page_size: int = 50,
        max_pages: int = 4,
    ) -> MessageLookup:
        """`POST /chat/findMessages/{instance}` for every JID a send to `phone` may be stored
        under, newest first. Each page is one call within EVOLUTION_LOOKUP_DEADLINE.

        Raises `ProviderAuthError` (including `UnsafeProviderAddressError`),
        `ProviderRateLimitedError` or `ProviderLookupError`; never retries, never touches the
        circuit breaker (a read says nothing about sending)."""
        digits = self._normalize(phone)
        masked = mask_phone(digits)
        url = self._url("chat/findMessages")
        found: dict[str, ProviderMessage] = {}
        total, complete = 0, True
        for remote_jid in jid_candidates(digits):
            page, pages = 1, 1
            while page <= pages:
                if page > max_pages:
                    complete = False
                    break
                body = find_messages_body(
                    remote_jid=remote_jid,
                    from_me=from_me,
                    sent_after=sent_after,
                    sent_before=sent_before,
                    page=page,
                    page_size=page_size,
                )
                messages, page_total, pages = self._lookup_page(
                    "POST", url, body, masked, parse=parse_find_messages, error_for_response=error_for_lookup_response
                )
                if page == 1:
                    total += page_total
                for message in messages:
                    found.setdefault(message.provider_message_id, message)
                page += 1
        ordered = sorted(found.values(), key=lambda m: m.timestamp or datetime.min.replace(tzinfo=UTC), reverse=True)
        return MessageLookup(messages=ordered, total=total, complete=complete)

    # ------------------------------------------------------------------ webhooks and pairing
    def webhook_body(self, *, url: str, signing_key: str) -> dict[str, Any]:
        """v2: `{"webhook": {...}}` with `headers: {"jwt_key": …}`, so Evolution adds
        `Authorization: Bearer <JWT>` (no key: no headers). v1 (1.8) takes a flat body and
        sends no custom headers."""
        if self.instance.api_version == "v1":
            return {
                "url": url,
                "enabled": True,
                "events": WEBHOOK_EVENTS,
                "webhook_by_events": False,
                "webhook_base64": False,
            }
        headers = {"jwt_key": signing_key} if signing_key else {}
        return {
            "webhook": {
                "enabled": True,
                "url": url,
                "headers": headers,
                "byEvents": False,
                "base64": False,
                "events": WEBHOOK_EVENTS,
            }
        }

    def configure_webhook(self, *, url: str, signing_key: str) -> int:
        """`POST /webhook/set/{instance}` (contract §4); returns the answer's status."""
        body = self.webhook_body(url=url, signing_key=signing_key)
        try:
            response = provider_client.request(
                "POST",
                self._url("webhook/set"),
                body=json.dumps(body).encode("utf-8"),
                headers=self._headers(body=True),
                deadline=deadline(LOOKUP),
                connect_timeout=connect_timeout(),
            )
        except HTTPCallError as exc:
            raise error_for_lookup_transport(exc) from exc
        return response.status

    def create_remote(self, *, webhook_url: str | None, signing_key: str) -> str:
        """`POST /instance/create` with the server's global key (v2); the answer's `hash` is the
        instance token we keep. The webhook is part of the same call."""
        payload: dict[str, Any] = {
            "instanceName": self.instance.instance_name,
            "qrcode": True,
            "integration": INTEGRATION,
        }
        if webhook_url:
            payload["webhook"] = self.webhook_body(url=webhook_url, signing_key=signing_key)["webhook"]
        response = self._control_call(
            "POST",
            f"{self.base_url}/instance/create",
            payload,
            error_for_response=error_for_lookup_response,
            error_for_transport=error_for_lookup_transport,
        )
        body = response.json()
        token = body.get("hash") if isinstance(body, dict) else None
        if isinstance(token, dict):  # 1.8 answered {"hash": {"apikey": …}}
            token = token.get("apikey")
        if not token:
            raise ProviderLookupError(
                "The provider created the instance but returned no token.",
                code="lookup_bad_answer",
                http_status=response.status,
            )
        return str(token)

    def pairing_state(self) -> PairingState:
        """`GET /instance/connectionState`; unless `open`, `GET /instance/connect/{instance}`, whose
        `base64` is the QR image to scan (it refreshes as the provider renews it)."""
        health = self.check_health()
        if health.healthy:
            return PairingState(HEALTH_OPEN, True, health.reason)
        if health.state == HEALTH_ERROR:
            return PairingState(HEALTH_ERROR, False, health.reason)
        response = self._control_call(
            "GET",
            self._url("instance/connect"),
            error_for_response=error_for_lookup_response,
            error_for_transport=error_for_lookup_transport,
            ok=(200,),
        )
        body = response.json()
        body = body if isinstance(body, dict) else {}
        inner = body.get("instance")
        inner = inner if isinstance(inner, dict) else {}
        if inner.get("state") == "open":
            return PairingState(HEALTH_OPEN, True, "connected")
        image = body.get("base64")
        if isinstance(image, str) and image.startswith("data:image/"):
            return PairingState(HEALTH_PAIRING, False, "scan the QR code with WhatsApp", qr_data_url=image)
        return PairingState(HEALTH_CONNECTING, False, "waiting for the provider's QR code")

    def restart(self) -> None:
        """`POST /instance/restart/{instance}`."""
        self._control_call(
            "POST",
            self._url("instance/restart"),
            error_for_response=error_for_lookup_response,
            error_for_transport=error_for_lookup_transport,
            ok=(200, 201),
        )

    def logout(self) -> None:
        """`DELETE /instance/logout/{instance}`: the number leaves this instance; pairing again
        needs a new QR scan."""
        self._control_call(
            "DELETE",
            self._url("instance/logout"),
            error_for_response=error_for_lookup_response,
            error_for_transport=error_for_lookup_transport,
            ok=(200,),
        )

    # ------------------------------------------------------------------ one send attempt
    def _send_once(self, number: str, message: str, masked: str, attempt: int) -> SendResult:
        """One POST within EVOLUTION_SEND_DEADLINE; the id is the answer's `key.id`."""
        started = time.monotonic()
        response, body = self._post_send(
            self._url("message/sendText"),
            self._send_payload(number, message),
            budget=deadline(SEND),
            started=started,
            masked=masked,
            attempt=attempt,
            error_for_response=error_for_send_response,
        )
        key = body.get("key") if isinstance(body, dict) else None
        key = key if isinstance(key, dict) else {}
        return self._accepted(
            response,
            body,
            message_id=str(key.get("id") or ""),
            remote_jid=str(key.get("remoteJid") or ""),
            status=str(body.get("status") or "PENDING"),
            started=started,
            masked=masked,
            attempt=attempt,
        )

    # ------------------------------------------------------------------ helpers
    def _url(self, route: str) -> str:
        return f"{self.base_url}/{route}/{quote(self.instance.instance_name, safe='')}"

    def _send_payload(self, number: str, message: str) -> dict[str, Any]:
        if getattr(self.instance, "api_version", "v2") == "v1":
            return {"number": number, "textMessage": {"text": message}, "options": {"linkPreview": False}}
        return {"number": number, "text": message, "linkPreview": False}


__all__ = [
    "AmbiguousSendError",
    "CircuitOpenError",
    "EvolutionAPIService",
    "HealthResult",
    "InstanceUnavailableError",
    "InvalidNumberError",
    "MessageLookup",
    "ProviderAuthError",
    "ProviderError",
    "ProviderLookupError",
    "ProviderMessage",
    "ProviderRateLimitedError",
    "SendResult",
    "TransientProviderError",
    "UnsafeProviderAddressError",
    "backoff_delay",
]
