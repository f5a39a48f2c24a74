"""Issue a billing API key from the command line (deploy scripts, first setup).

The raw key is written to stdout once and is not stored: keep it from this output. With
`--json` the output is one JSON object, for scripts.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.audit.models import AuditAction
from apps.audit.services import Actor, record_event
from apps.billing.constants import TemplateType
from apps.billing.models import BillingAPIKey
from apps.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Create a billing API key for a tenant and print it (shown only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="Tenant slug.")
        parser.add_argument("--name", required=True, help="Who uses the key, e.g. 'ERP production'.")
        parser.add_argument("--expires-days", type=int, default=None, help="Expire after N days (default: never).")
        parser.add_argument(
            "--allowed-ip",
            action="append",
            default=[],
            dest="allowed_ips",
            help="IP or CIDR allowed to use the key (repeatable; default: any).",
        )
        parser.add_argument(
            "--type",
            action="append",
            default=[],
            dest="types",
            choices=TemplateType.values,
            help="Template type the key may send (repeatable; default: all).",
        )
        parser.add_argument("--rate-limit", type=int, default=None, help="Requests per minute for this key.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = Tenant.objects.get(slug=options["tenant"])
        except Tenant.DoesNotExist:
            raise CommandError(f"No tenant with slug {options['tenant']!r}.") from None
        expires_days = options["expires_days"]
        if expires_days is not None and expires_days <= 0:
            raise CommandError("--expires-days must be a positive number of days.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            key, raw_key = BillingAPIKey.issue(
                tenant=tenant,
                name=options["name"],
                expires_at=expires_at,
                allowed_ips=options["allowed_ips"],
                allowed_template_types=options["types"],
                rate_limit_per_minute=options["rate_limit"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        record_event(
            actor=Actor.command("create_billing_api_key"),
            tenant_id=tenant.pk,
            action=AuditAction.API_KEY_ISSUED,
            obj=key,
        )

        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "id": str(key.pk),
                        "tenant": tenant.slug,
                        "name": key.name,
                        "prefix": key.prefix,
                        "key": raw_key,
                        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
                        "allowed_ips": key.allowed_ips,
                        "allowed_template_types": key.allowed_template_types,
                        "rate_limit_per_minute": key.rate_limit_per_minute,
                    }
                )
            )
            return
        self.stdout.write(f"Created API key {key.name!r} for tenant {tenant.slug} (id {key.pk}).")
        self.stdout.write(f"Expires: {key.expires_at.isoformat() if key.expires_at else 'never'}")
        self.stdout.write("Copy the key now; it is not stored and will not be shown again:")
        self.stdout.write(raw_key)
