"""Configure the provider webhook (Evolution or WAHA) of one (or every active) WhatsApp
instance to call us. Instances created from the admin get theirs at creation; this is for the
others, and after a change of public URL or SECRET_KEY.

    manage.py configure_evolution_webhook --tenant clinica --instance main \\
        --base-url https://billing.example.com

The URL sent to the provider carries the instance's webhook secret; this command prints it
masked. `--no-jwt` skips Evolution's `jwt_key` header option (v1 servers never use it); WAHA
webhooks are always HMAC-signed.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.billing.services.webhook_setup import WebhookSetupError, configure_instance_webhook
from apps.connections.models import WhatsAppInstance


class Command(BaseCommand):
    help = "Point the provider webhook of WhatsApp instance(s) (Evolution or WAHA) at this service."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="Tenant slug.")
        parser.add_argument("--instance", help="Our name for the instance (WhatsAppInstance.name).")
        parser.add_argument("--all", action="store_true", help="Every active instance (of --tenant, if given).")
        parser.add_argument(
            "--base-url", default=None, help="Public URL of this service (default: BILLING_PUBLIC_BASE_URL)."
        )
        parser.add_argument("--no-jwt", action="store_true", help="Do not ask Evolution for a Bearer JWT.")

    def handle(self, *args: Any, **options: Any) -> None:
        base_url = options["base_url"] or settings.BILLING_PUBLIC_BASE_URL
        if not base_url:
            raise CommandError("Give --base-url or set BILLING_PUBLIC_BASE_URL.")
        instances = self._instances(options)
        failures = 0
        for instance in instances:
            try:
                result = configure_instance_webhook(
                    instance=instance, public_base_url=base_url, use_jwt=not options["no_jwt"]
                )
            except WebhookSetupError as exc:
                failures += 1
                self.stderr.write(f"{instance.name}: {exc}")
                continue
            self.stdout.write(
                f"{instance.name}: {instance.provider} webhook set to {result.masked_url} "
                f"(signed {'on' if result.signed else 'off'})"
            )
        if failures:
            raise CommandError(f"{failures} instance(s) could not be configured.")

    def _instances(self, options: dict[str, Any]) -> list[WhatsAppInstance]:
        instances = WhatsAppInstance.objects.filter(is_active=True).order_by("pk")
        if options["tenant"]:
            instances = instances.filter(tenant__slug=options["tenant"])
        if options["instance"]:
            instances = instances.filter(name=options["instance"])
        elif not options["all"]:
            raise CommandError("Name an --instance (with --tenant) or pass --all.")
        found = list(instances)
        if not found:
            raise CommandError("No active instance matches.")
        return found
