"""Choosing which variation of a template each contact gets.

`draw_variations(variations, strategy, count)` is called once per request (not once per
contact) with the template's active variations, which the tenant context already holds: all
`count` choices are drawn in memory, so ingest of 10,000 contacts costs what ingest of one does.

Sequential (round-robin) must stay exact across concurrent requests for the same template, so
its slots are not drawn here: the ingest statement reserves them with `UPDATE … SET
rotation_cursor = rotation_cursor + n RETURNING` and maps slot k to variation k mod n in the
template's rotation order (`services/ingest_statement.py`). Two requests can never get the same
slots; the row lock lasts only that statement. The same statement adds each variation's uses to
its `used_count`, so a request that is not written leaves no trace.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from apps.billing.constants import RotationStrategy


class NoActiveVariationError(ValueError):
    """The template has nothing to send: every variation is inactive (or there are none)."""

    code = "no_active_variation"


def draw_variations(
    variations: Sequence[Any], strategy: str, count: int, *, rng: random.Random | None = None
) -> list[Any] | None:
    """`count` of `variations` (active ones, in rotation order), one per contact, for the random
    and weighted strategies; None for sequential, whose slots the ingest statement reserves.
    `rng` makes draws reproducible (tests)."""
    if count < 0:
        raise ValueError("count must be >= 0")
    if not variations:
        raise NoActiveVariationError("the template has no active variation to send")
    if strategy == RotationStrategy.SEQUENTIAL:
        return None
    rng = rng or random.Random()
    if strategy == RotationStrategy.WEIGHTED:
        return rng.choices(variations, weights=[v.weight for v in variations], k=count)
    if strategy == RotationStrategy.RANDOM:
        return rng.choices(variations, k=count)
    raise ValueError(f"Unknown rotation strategy {strategy!r}")
