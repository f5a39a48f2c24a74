"""`manage.py asaas_sandbox_event --url URL --token TOKEN --event PAYMENT_RECEIVED --external-id ID
--value 150.00 --due-date 2026-12-10` — post one real-shaped Asaas event to a webhook URL, as
Asaas would (the local demo; the tests post the same payloads to the same view).

    python manage.py asaas_sandbox_event --url "$(jq -r .asaas_webhook_url setup.json)" \
        --token "$ASAAS_TOKEN" --event PAYMENT_RECEIVED --external-id INV-1001 --value 150 --due-date 2026-12-10
"""

from __future__ import annotations

import json
from datetime import date

import requests
from django.core.management.base import BaseCommand, CommandError

from apps.billing.services.contact_validation import parse_amount
from apps.charges.asaas_sandbox import asaas_event


class Command(BaseCommand):
    help = "Post one real-shaped Asaas payment event to a webhook URL (local demo)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", required=True, help="The tenant's asaas_webhook_url (absolute)")
        parser.add_argument("--token", required=True, help="The token set with --asaas-webhook-token")
        parser.add_argument("--event", required=True, help="e.g. PAYMENT_RECEIVED, PAYMENT_REFUNDED")
        parser.add_argument("--external-id", required=True, help="The charge's external_id (externalReference)")
        parser.add_argument("--value", required=True)
        parser.add_argument("--due-date", required=True, help="YYYY-MM-DD")
        parser.add_argument("--payment-id", help="Asaas payment id (default: a new one)")

    def handle(self, *args, **options) -> None:
        value = parse_amount(options["value"])
        if value is None:
            raise CommandError("--value must be an amount")
        try:
            due = date.fromisoformat(options["due_date"])
        except ValueError:
            raise CommandError("--due-date must be YYYY-MM-DD") from None
        payload = asaas_event(
            options["event"],
            external_reference=options["external_id"],
            value=value,
            due_date=due,
            payment_id=options["payment_id"],
        )
        try:
            response = requests.post(
                options["url"],
                json=payload,
                headers={"asaas-access-token": options["token"]},
                timeout=10,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise CommandError(f"could not reach {options['url']}: {type(exc).__name__}") from exc
        self.stdout.write(
            json.dumps({"event_id": payload["id"], "http_status": response.status_code, "answer": response.text[:500]})
        )
