"""WAHAAPIService: the provider client for WAHA (devlikeapro/waha), behind the same interface as
Evolution's (`provider_client.ProviderClient`), with the same errors and `nothing_sent` rules.

Contract (shared evolution-api-contract.md §6): the key travels as `X-Api-Key`; a session is
healthy only when `WORKING`; a send is `POST /api/sendText {session, chatId, text}` to a chat
id that `check-exists` confirmed (waha_responses.py explains the two calls). Both calls of a
send fit inside one EVOLUTION_SEND_DEADLINE together, so reconciliation's "the send's deadline
has passed" still means no call can arrive any more.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from apps.common.http_client import HTTPCallError, HTTPResponse, HTTPStatusError
from apps.contacts.utils import mask_phone

from .evolution_lookup import MessageLookup, ProviderMessage
from .provider_client import (
    HEALTH_CLOSE,
    HEALTH_CONNECTING,
    HEALTH_ERROR,
    HEALTH_OPEN,
    HEALTH_PAIRING,
    OPERATION_SEND,
    HealthResult,
    PairingState,
    ProviderClient,
    SendResult,
)
from .provider_errors import InvalidNumberError, ProviderLookupError
from .provider_http import HEALTH, LOOKUP, SEND, connect_timeout, deadline, provider_client
from .provider_responses import error_for_lookup_transport
from .waha_lookup import (
    chat_id,
    chat_id_candidates,
    chat_messages_query,
    parse_chat_messages,
    sent_message_id,
)
from .waha_responses import (
    error_for_check_response,
    error_for_check_transport,
    error_for_read_response,
    error_for_send_response,
)

WORKING = "WORKING"
_STATUS_TO_HEALTH = {
    "STARTING": HEALTH_CONNECTING,
    "SCAN_QR_CODE": HEALTH_PAIRING,
    "STOPPED": HEALTH_CLOSE,
    "FAILED": HEALTH_ERROR,
}
# The session itself is gone: a paired number in one of these was logged out (or broke).
SESSION_LOST = frozenset({"SCAN_QR_CODE", "FAILED"})
# `message.any` carries the customer's messages and the echoes of ours; `message` (inbound
# only) is not asked for, or every reply would arrive twice.
WEBHOOK_EVENTS = ["message.any", "message.ack", "session.status"]
WEBHOOK_RETRIES = {"policy": "exponential", "delaySeconds": 2, "attempts": 10}
CHECK_SHARE = 1 / 3  # of the send deadline, at most, for the number check


class WAHAAPIService(ProviderClient):
    name = "waha"
    auth_header = "X-Api-Key"

    # ------------------------------------------------------------------ health
    def check_health(self) -> HealthResult:
        """`GET /api/sessions/{session}`: healthy iff `status == "WORKING"` (never raises)."""
        started = time.monotonic()
        response = self._health_answer(self._session_url(), started)
        if isinstance(response, HealthResult):
            return response
        status = response.status
        body = response.json()
        session_status = str(body.get("status") or "") if isinstance(body, dict) else ""
        if not session_status:
            return self._health(False, HEALTH_ERROR, f"unexpected HTTP {status} from the provider", started, status)
        if session_status == WORKING:
            return self._healthy(started, status, session_status)
        return self._health(
            False,
            _STATUS_TO_HEALTH.get(session_status, HEALTH_ERROR),
            f"session status is {session_status}",
            started,
            status,
            provider_state=session_status,
            session_lost=session_status in SESSION_LOST,
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
        """The chat history (`GET /api/{session}/chats/{chatId}/messages`) of every chat a send to
        `phone` may live in, newest first; `complete` when every page was read (the last one came
        back short). Each page is one call within EVOLUTION_LOOKUP_DEADLINE. What the history
        holds depends on the engine's store: docs/providers.md, "Reconciliation"."""
        digits = self._normalize(phone)
        masked = mask_phone(digits)
        found: dict[str, ProviderMessage] = {}
        complete = True
        for chat in chat_id_candidates(digits):
            for page in range(max_pages + 1):
                if page == max_pages:
                    complete = False
                    break
                query = chat_messages_query(
                    from_me=from_me,
                    sent_after=sent_after,
                    sent_before=sent_before,
                    limit=page_size,
                    offset=page * page_size,
                )
                url = f"{self.base_url}/api/{self._session()}/chats/{quote(chat, safe='')}/messages?{urlencode(query)}"
                messages = self._lookup_page(
                    "GET", url, None, masked, parse=parse_chat_messages, error_for_response=error_for_read_response
                )
                for message in messages:
                    found.setdefault(message.provider_message_id, message)
                if len(messages) < page_size:
                    break
        ordered = sorted(found.values(), key=lambda m: m.timestamp or datetime.min.replace(tzinfo=UTC), reverse=True)
        return MessageLookup(messages=ordered, total=len(ordered), complete=complete)

    # ------------------------------------------------------------------ webhooks and pairing
    def webhook_config(self, *, url: str, signing_key: str) -> dict[str, Any]:
        """One entry of the session's `config.webhooks`, HMAC-signed with `signing_key`."""
        hook: dict[str, Any] = {"url": url, "events": WEBHOOK_EVENTS, "retries": WEBHOOK_RETRIES}
        if signing_key:
            hook["hmac"] = {"key": signing_key}
        return hook

    def configure_webhook(self, *, url: str, signing_key: str) -> int:
        """`PUT /api/sessions/{session}` with the webhook in its config (WAHA restarts a running
        session to apply it); returns the answer's status."""
        body = {"config": {"webhooks": [self.webhook_config(url=url, signing_key=signing_key)]}}
        try:
            response = provider_client.request(
                "PUT",
                self._session_url(),
                body=json.dumps(body).encode("utf-8"),
                headers=self._headers(body=True),
                deadline=deadline(LOOKUP),
                connect_timeout=connect_timeout(),
            )
        except HTTPCallError as exc:
            raise error_for_lookup_transport(exc) from exc
        return response.status

    def create_remote(self, *, webhook_url: str | None, signing_key: str) -> str:
        """`POST /api/sessions {name, start: true, config}`; the server's key stays the key (WAHA
        has no per-session token)."""
        config: dict[str, Any] = {}
        if webhook_url:
            config["webhooks"] = [self.webhook_config(url=webhook_url, signing_key=signing_key)]
        self._control(
            "POST",
            f"{self.base_url}/api/sessions",
            {"name": self.instance.instance_name, "start": True, "config": config},
        )
        return self.instance.api_key

    def pairing_state(self) -> PairingState:
        """The session's status; `SCAN_QR_CODE` → `GET /api/{session}/auth/qr` (JSON: a base64
        PNG); `STOPPED` → started, so a QR follows."""
        health = self.check_health()
        if health.healthy:
            return PairingState(HEALTH_OPEN, True, health.reason)
        if health.provider_state == "SCAN_QR_CODE":
            response = self._control("GET", f"{self.base_url}/api/{self._session()}/auth/qr", ok=(200,))
            return PairingState(
                HEALTH_PAIRING, False, "scan the QR code with WhatsApp", qr_data_url=_qr_image(response)
            )
        if health.provider_state == "STOPPED":
            self._control("POST", f"{self._session_url()}/start")
            return PairingState(HEALTH_CONNECTING, False, "session starting")
        return PairingState(health.state, False, health.reason)

    def restart(self) -> None:
        self._control("POST", f"{self._session_url()}/restart")

    def logout(self) -> None:
        self._control("POST", f"{self._session_url()}/logout")

    # ------------------------------------------------------------------ one send attempt
    def _send_once(self, number: str, message: str, masked: str, attempt: int) -> SendResult:
        """The number check, then the POST on a fresh connection, both within the send deadline."""
        started = time.monotonic()
        budget = deadline(SEND)
        chat = self._check_exists(number, masked, attempt, started, min(deadline(HEALTH), budget * CHECK_SHARE))
        payload = {"session": self._session(), "chatId": chat, "text": message, "linkPreview": False}
        response, body = self._post_send(
            f"{self.base_url}/api/sendText",
            payload,
            budget=max(budget - (time.monotonic() - started), 0.001),
            started=started,
            masked=masked,
            attempt=attempt,
            error_for_response=error_for_send_response,
        )
        return self._accepted(
            response,
            body,
            message_id=sent_message_id(body) or "",
            remote_jid=chat,
            status="PENDING",
            started=started,
            masked=masked,
            attempt=attempt,
        )

    def _check_exists(self, number: str, masked: str, attempt: int, started: float, budget: float) -> str:
        """`GET /api/contacts/check-exists`: the chat id to send to, or `InvalidNumberError`."""
        url = f"{self.base_url}/api/contacts/check-exists?{urlencode({'phone': number, 'session': self._session()})}"
        try:
            response = provider_client.request(
                "GET", url, headers=self._headers(), deadline=budget, connect_timeout=min(connect_timeout(), budget)
            )
        except HTTPCallError as exc:
            error = error_for_check_transport(exc)
            self._record(OPERATION_SEND, error.outcome, started, masked, attempt, error=error)
            raise error from exc
        body = response.json()
        if response.status != 200 or not isinstance(body, dict):
            error = error_for_check_response(response)
            self._record(OPERATION_SEND, error.outcome, started, masked, attempt, error=error)
            raise error from HTTPStatusError(response)
        if body.get("numberExists") is not True:
            error = InvalidNumberError("The number is not on WhatsApp.", http_status=response.status)
            self._record(OPERATION_SEND, error.outcome, started, masked, attempt, error=error)
            raise error
        return str(body.get("chatId") or chat_id(number))

    # ------------------------------------------------------------------ helpers
    def _session(self) -> str:
        return quote(self.instance.instance_name, safe="")

    def _session_url(self) -> str:
        return f"{self.base_url}/api/sessions/{self._session()}"

    def _control(self, method: str, url: str, payload: Any = None, *, ok: tuple[int, ...] = (200, 201)) -> HTTPResponse:
        return self._control_call(
            method,
            url,
            payload,
            error_for_response=error_for_read_response,
            error_for_transport=error_for_lookup_transport,
            ok=ok,
        )


def _qr_image(response: HTTPResponse) -> str:
    """`{"mimetype": "image/png", "data": "<base64>"}` (what WAHA answers to `Accept:
    application/json`) → a data URL."""
    body = response.json()
    mimetype = str(body.get("mimetype") or "image/png") if isinstance(body, dict) else ""
    if not mimetype.startswith("image/") or not isinstance(body.get("data"), str):
        raise ProviderLookupError("The provider's QR answer is not an image.", code="lookup_bad_answer")
    return f"data:{mimetype};base64,{body['data']}"
