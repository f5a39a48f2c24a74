"""`manage.py billing_setup_tenant … --asaas-webhook-token TOKEN`: billing's set-up command,
plus the tenant's Asaas webhook (`--json` adds `asaas_webhook_url`).

This app is listed before `billing` in INSTALLED_APPS, so Django runs this subclass for the
command's name; billing's command stays unaware of charges (it only offers the
`extend_setup` seam). The token is checked before anything is written.
"""

from __future__ import annotations

from django.core.management.base import CommandError

from apps.billing.management.commands.billing_setup_tenant import Command as BillingSetupCommand
from apps.billing.services.tenant_setup import TenantSetupResult
from apps.charges.services.asaas_setup import (
    AsaasTokenError,
    check_asaas_token,
    configure_asaas_webhook,
)


class Command(BillingSetupCommand):
    help = BillingSetupCommand.help + " With --asaas-webhook-token, also set up the Asaas payment webhook."

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--asaas-webhook-token", help="The token Asaas sends in the asaas-access-token header (32-255 characters)"
        )

    def handle(self, *args, **options) -> None:
        if options.get("asaas_webhook_token") is not None:
            try:
                check_asaas_token(options["asaas_webhook_token"])
            except AsaasTokenError as exc:
                raise CommandError(str(exc)) from exc
        super().handle(*args, **options)

    def extend_setup(self, *, result: TenantSetupResult, options: dict) -> dict:
        token = options.get("asaas_webhook_token")
        if not token:
            return {}
        return {"asaas_webhook_url": configure_asaas_webhook(tenant=result.tenant, token=token)}
