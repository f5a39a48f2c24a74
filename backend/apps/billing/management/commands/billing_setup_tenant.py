"""Create or update a tenant ready to send, and print a new API key (shown once).

    python manage.py billing_setup_tenant --tenant "Clínica Sorriso" \
        --evolution-url http://127.0.0.1:8081 --evolution-api-key KEY --instance clinica \
        --messages-per-minute 20 --timezone America/Sao_Paulo \
        --business-hours "mon-fri 08:00-18:00; sat 08:00-12:00" --json
"""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.billing.services.tenant_setup import (
    ALWAYS_OPEN,
    BusinessHoursSpecError,
    TenantSetupResult,
    parse_business_hours,
    setup_tenant,
)


class Command(BaseCommand):
    help = "Create or update a billing tenant (idempotent) and print a new API key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", required=True, help="Tenant name")
        parser.add_argument("--slug", help="Tenant slug (default: from the name)")
        parser.add_argument("--evolution-url")
        parser.add_argument("--evolution-api-key")
        parser.add_argument("--instance", help="Instance name (ours and the provider's)")
        parser.add_argument("--messages-per-minute", type=int)
        parser.add_argument("--timezone")
        hours = parser.add_mutually_exclusive_group()
        hours.add_argument("--business-hours", help='e.g. "mon-fri 08:00-18:00; sat 08:00-12:00"')
        hours.add_argument("--always-open", action="store_true")
        parser.add_argument("--key-name", default="setup")
        parser.add_argument("--creditor-name", help="The creditor's legal name (printed by collection messages)")
        parser.add_argument("--creditor-document", help="The creditor's CPF or CNPJ")
        parser.add_argument("--json", action="store_true", help="Print JSON (for scripts)")

    def handle(self, *args, **options) -> None:
        if bool(options["evolution_url"]) != bool(options["instance"]):
            raise CommandError("--evolution-url and --instance go together")
        try:
            hours = (
                ALWAYS_OPEN
                if options["always_open"]
                else (parse_business_hours(options["business_hours"]) if options["business_hours"] else None)
            )
            result = setup_tenant(
                name=options["tenant"],
                slug=options["slug"],
                timezone=options["timezone"],
                evolution_url=options["evolution_url"],
                evolution_api_key=options["evolution_api_key"],
                instance_name=options["instance"],
                messages_per_minute=options["messages_per_minute"],
                business_hours=hours,
                key_name=options["key_name"],
                creditor_legal_name=options["creditor_name"],
                creditor_document=options["creditor_document"],
            )
        except (BusinessHoursSpecError, ValidationError) as exc:
            raise CommandError(str(exc)) from exc
        summary = {
            "tenant": result.tenant.slug,
            "tenant_id": str(result.tenant.pk),
            "created": result.created,
            "instance": result.instance.name if result.instance else None,
            "messages_per_minute": result.config.messages_per_minute,
            "api_key": result.raw_api_key,
        }
        extras = self.extend_setup(result=result, options=options)
        summary.update(extras)
        if options["json"]:
            self.stdout.write(json.dumps(summary))
            return
        self.stdout.write(
            f"Tenant {result.tenant.name} ({result.tenant.slug}) {'created' if result.created else 'updated'}"
        )
        self.stdout.write(f"API key (shown once, store it now): {result.raw_api_key}")
        for name, value in extras.items():
            self.stdout.write(f"{name}: {value}")

    def extend_setup(self, *, result: TenantSetupResult, options: dict) -> dict:
        """The seam for apps above billing: a subclass of this command (an app listed before
        billing in INSTALLED_APPS, e.g. apps.charges) adds its own options and set-up here,
        after the tenant exists, and returns what it adds to the summary."""
        return {}
