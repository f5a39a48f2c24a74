"""Webhook test helpers: the provider's documented payloads, a tenant with an instance (built by
`setup_tenant`) and billing contacts already handed to the provider (`Hook`, the `hook` fixture
of the billing conftest), and a poster that sends envelopes to the real URL."""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from typing import Any

from django.test import Client
from django.urls import reverse

from apps.billing.constants import ContactStatus, QueueStatus
from apps.billing.models import BillingContact, BillingQueue, BillingTemplate
from apps.connections.models import WhatsAppInstance

from .api import ApiTenant
from .builders import build_contact, build_queue

_ids = itertools.count(1)

# Bodies from docs/evolution-api-contract.md §4 (values as printed there; `instance`
# and ids are filled in per test).
MESSAGES_UPDATE_V2 = {
    "event": "messages.update",
    "instance": "billing-bot",
    "data": {
        "keyId": "3EB0A1B2C3D4E5F6",
        "remoteJid": "5511998765432@s.whatsapp.net",
        "fromMe": True,
        "participant": None,
        "status": "DELIVERY_ACK",
        "instanceId": "clx-instance",
        "messageId": "clx-db-id",
    },
    "destination": "https://billing.example.com/wa/hook/<secret>",
    "date_time": "2025-09-24T21:37:57.432Z",
    "sender": "5511900000000@s.whatsapp.net",
    "server_url": "https://evo.example.com",
    "apikey": None,
}
MESSAGES_UPDATE_V1 = {
    "event": "messages.update",
    "instance": "billing-bot",
    "data": {
        "remoteJid": "5511998765432@s.whatsapp.net",
        "fromMe": True,
        "id": "BAE5A1B2C3D4E5F6",
        "status": "DELIVERY_ACK",
        "datetime": 1717689200000,
        "owner": "billing-bot",
        "pollUpdates": None,
    },
    "destination": "https://billing.example.com/wa/hook/<secret>",
    "date_time": "2025-09-24T21:37:57.432Z",
    "sender": "5511900000000@s.whatsapp.net",
    "server_url": "https://evo.example.com",
}
MESSAGES_UPSERT_V2 = {
    "event": "messages.upsert",
    "instance": "billing-bot",
    "data": {
        "key": {"remoteJid": "5511998765432@s.whatsapp.net", "fromMe": False, "id": "3A5F00000000000A"},
        "pushName": "Maria",
        "status": "DELIVERY_ACK",
        "message": {"conversation": "Já paguei"},
        "contextInfo": {"stanzaId": "3EB0A1B2C3D4E5F6", "quotedMessage": {"conversation": ""}},
        "messageType": "conversation",
        "messageTimestamp": 1717689200,
        "instanceId": "clx-instance",
        "source": "android",
    },
    "destination": "https://billing.example.com/wa/hook/<secret>",
    "date_time": "2025-09-24T21:37:57.432Z",
    "sender": "5511900000000@s.whatsapp.net",
    "server_url": "https://evo.example.com",
    "apikey": None,
}
SEND_MESSAGE_V2 = {
    "event": "send.message",
    "instance": "billing-bot",
    "data": {
        "key": {"remoteJid": "5511998765432@s.whatsapp.net", "fromMe": True, "id": "3EB0A1B2C3D4E5F6"},
        "pushName": "Você",
        "status": "PENDING",
        "message": {"conversation": "Sua fatura vence amanhã."},
        "contextInfo": None,
        "messageType": "conversation",
        "messageTimestamp": 1717689097,
        "instanceId": "clx-instance",
        "source": "web",
    },
    "destination": "https://billing.example.com/wa/hook/<secret>",
    "date_time": "2025-09-24T21:37:57.432Z",
    "sender": "5511900000000@s.whatsapp.net",
    "server_url": "https://evo.example.com",
    "apikey": None,
}
CONNECTION_UPDATE_V2 = {
    "event": "connection.update",
    "instance": "billing-bot",
    "data": {"instance": "billing-bot", "state": "close", "statusReason": 428},
    "destination": "https://billing.example.com/wa/hook/<secret>",
    "date_time": "2025-09-24T21:37:57.432Z",
    "sender": "5511900000000@s.whatsapp.net",
    "server_url": "https://evo.example.com",
    "apikey": None,
}
PHONE = "+5511998765432"


def envelope(template: dict[str, Any], instance: WhatsAppInstance, **data: Any) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body["instance"] = instance.instance_name
    body["data"].update(data)
    return body


def webhook_path(instance: WhatsAppInstance, event: str | None = None) -> str:
    kwargs = {"token": instance.webhook_secret, **({"event": event} if event else {})}
    return reverse("billing:evolution-webhook", kwargs=kwargs)


@dataclass
class Hook:
    api: ApiTenant
    client: Client

    @property
    def instance(self) -> WhatsAppInstance:
        return self.api.instance

    @property
    def tenant(self):
        return self.api.tenant

    def post(self, body: Any, *, token: str | None = None, raw: bytes | None = None, **headers: Any):
        path = webhook_path(self.instance) if token is None else f"/api/v1/billing/webhooks/evolution/{token}/"
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(path, data=data, content_type="application/json", **headers)

    def template(self) -> BillingTemplate:
        return BillingTemplate.objects.filter(tenant=self.tenant, is_default=True, template_type="overdue").first()

    def sent_contact(
        self,
        *,
        phone: str = PHONE,
        provider_message_id: str | None = None,
        status: str = ContactStatus.SENT,
        queue: BillingQueue | None = None,
    ) -> BillingContact:
        """A contact the worker already handed to the provider (as `record_sent` leaves it)."""
        template = self.template()
        queue = queue or build_queue(
            self.tenant, template=template, total=1, instance=self.instance, status=QueueStatus.RUNNING
        )
        variation = template.variations.first()
        from django.utils import timezone

        return build_contact(
            queue,
            phone=phone,
            status=status,
            variation=variation,
            provider_message_id=provider_message_id or f"3EB0{next(_ids):012X}",
            sent_at=timezone.now(),
            attempts=1,
        )
