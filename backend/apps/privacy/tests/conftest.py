"""Privacy test fixtures: tenants through the set-up service (billing's API helpers), the
in-process dispatch fixtures for flows that really send, and a way to search every table."""

from __future__ import annotations

from urllib.parse import quote

from django.apps import apps
from django.db import models
from django.db.models import Q, TextField
from django.db.models.functions import Cast


def subject_url(phone: str) -> str:
    return f"/api/v1/billing/data-subjects/{quote(phone, safe='')}"


def export(tenant, phone: str):
    return tenant.client.get(subject_url(phone), HTTP_X_BILLING_API_KEY=tenant.raw_key)


def erase(tenant, phone: str):
    return tenant.client.delete(subject_url(phone), HTTP_X_BILLING_API_KEY=tenant.raw_key)


def rows_containing(needle: str) -> list[str]:
    """`app.Model.field` of every row, in every table of the project, whose text, char or JSON
    column contains `needle`: the proof that an erasure left nothing behind."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        text_fields = [
            f
            for f in model._meta.concrete_fields
            if isinstance(f, (models.CharField, models.TextField, models.JSONField))
        ]
        for field in text_fields:
            hits = (
                model._default_manager.annotate(_text=Cast(field.attname, TextField()))
                .filter(Q(_text__contains=needle))
                .count()
            )
            if hits:
                found.append(f"{model._meta.label}.{field.name} ({hits})")
    return found
