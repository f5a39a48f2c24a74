"""Create (or keep) the local demo tenant and an `admin` superuser. Used by `make run` only."""
from __future__ import annotations

from datetime import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.chat.models import BusinessHours
from apps.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Create the local demo tenant (idempotent). Refuses to run with DEBUG off."

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("ensure_demo_tenant creates a known admin password: local runs only (DEBUG=1)")
        with transaction.atomic():
            tenant, created = Tenant.objects.get_or_create(slug="demo", defaults={"name": "Demo Clinic"})
            if created:
                rows = [BusinessHours(tenant=tenant, weekday=d, opens_at=time(8), closes_at=time(18)) for d in range(5)]
                rows.append(BusinessHours(tenant=tenant, weekday=5, opens_at=time(8), closes_at=time(12)))
                BusinessHours.objects.bulk_create(rows)
            user_model = get_user_model()
            if not user_model.objects.filter(username="admin").exists():
                user_model.objects.create_superuser("admin", "admin@example.com", "admin")
        self.stdout.write(f"demo tenant: {tenant.name} ({tenant.slug}){' created' if created else ''}")
