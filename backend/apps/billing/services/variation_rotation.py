"""Choosing which variation of a template each contact gets.

`choose_variations(template, count)` is called once per request (not once per contact): it
loads the active variations in one query and draws all `count` choices in memory, so ingest
of 10,000 contacts costs the same few queries as ingest of one.

Sequential (round-robin) must stay exact across concurrent requests for the same template:
slots are reserved in blocks with one `UPDATE … SET rotation_cursor = rotation_cursor + n
RETURNING`, so two requests can never get the same slots. The row lock that UPDATE takes is
held until the caller's transaction ends, which serialises concurrent ingests *of the same
template*: call this late in the ingest transaction (just before the bulk insert).
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from django.db import connection
from django.db.models import Case, F, IntegerField, Value, When

from apps.billing.constants import RotationStrategy
from apps.billing.models import BillingTemplate, BillingTemplateVariation


class NoActiveVariationError(ValueError):
    """The template has nothing to send: every variation is inactive (or there are none)."""

    code = "no_active_variation"

    def __init__(self, template: BillingTemplate) -> None:
        self.template_id = template.pk
        super().__init__(f"Template {template.name!r} has no active variation to send.")


def reserve_rotation_slots(template: BillingTemplate, count: int) -> int:
    """Atomically reserve `count` consecutive round-robin slots; return the first one."""
    table = connection.ops.quote_name(BillingTemplate._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET rotation_cursor = rotation_cursor + %s WHERE id = %s RETURNING rotation_cursor",
            [count, template.pk],
        )
        row = cursor.fetchone()
    if row is None:
        raise BillingTemplate.DoesNotExist(f"Template {template.pk} no longer exists.")
    end = int(row[0])
    template.rotation_cursor = end
    return end - count


def choose_variations(
    template: BillingTemplate, count: int, *, rng: random.Random | None = None
) -> list[BillingTemplateVariation]:
    """`count` variations of `template`, one per contact in order, by its rotation strategy.

    Inactive variations are never chosen. Raises `NoActiveVariationError` when there is none.
    `rng` makes random and weighted draws reproducible (tests); sequential ignores it.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if count == 0:
        return []
    variations = list(template.active_variations())
    if not variations:
        raise NoActiveVariationError(template)
    strategy = template.rotation_strategy
    if strategy == RotationStrategy.SEQUENTIAL:
        start = reserve_rotation_slots(template, count)
        size = len(variations)
        return [variations[(start + offset) % size] for offset in range(count)]
    rng = rng or random.Random()
    if strategy == RotationStrategy.WEIGHTED:
        return rng.choices(variations, weights=[v.weight for v in variations], k=count)
    if strategy == RotationStrategy.RANDOM:
        return rng.choices(variations, k=count)
    raise ValueError(f"Unknown rotation strategy {strategy!r}")


def record_variation_usage(chosen: Sequence[BillingTemplateVariation]) -> None:
    """Add each variation's number of uses to its `used_count`, in one UPDATE.

    Separate from `choose_variations` on purpose: the ingest service calls it in the same
    transaction as the contact insert, so a rolled-back request leaves no trace.
    """
    uses = Counter(v.pk for v in chosen)
    if not uses:
        return
    BillingTemplateVariation.objects.filter(pk__in=list(uses)).update(
        used_count=F("used_count")
        + Case(
            *[When(pk=pk, then=Value(n)) for pk, n in uses.items()],
            default=Value(0),
            output_field=IntegerField(),
        )
    )
