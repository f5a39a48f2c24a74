"""One way to change a row's status: check the transition table, then compare-and-swap.

The UPDATE carries the status we read in its WHERE clause, so two processes acting on the
same row cannot both win: the loser gets `InvalidTransition(code="concurrent_change")`
instead of silently overwriting the winner (e.g. a pause racing a completion). Sets of rows
move with `transition_rows`: the allowed source statuses are its WHERE clause, so a row that
moved meanwhile is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from apps.billing.constants import InvalidTransition, check_transition, status_sources


class StatusMachineMixin(models.Model):
    """For models with a `status` field whose moves are listed in `constants.py`."""

    #: TransitionKind value naming the table that governs `status`.
    status_kind: str = ""
    status: str  # each model declares the field

    class Meta:
        abstract = True

    def transition_side_effects(self, new_status: str, now: datetime) -> dict[str, Any]:
        """Extra fields to write with the new status (timestamps); override per model."""
        return {}

    def transition_to(self, new_status: str, *, save: bool = True, **changes: Any) -> None:
        """Move to `new_status` or raise `InvalidTransition`.

        `changes` are other fields written in the same UPDATE (e.g. `error_code`); pass plain
        values, not F() expressions (they are also set on the instance). With
        `save=False` only the in-memory instance changes (for a caller that saves it itself,
        e.g. an unsaved row).
        """
        old_status = self.status
        check_transition(self.status_kind, old_status, new_status)
        now = timezone.now()
        fields: dict[str, Any] = {**self.transition_side_effects(new_status, now), **changes}
        fields["status"] = new_status
        if hasattr(self, "updated_at"):
            fields["updated_at"] = now
        if save and self.pk is not None:
            updated = type(self)._default_manager.filter(Q(status=old_status), pk=self.pk).update(**fields)
            if updated != 1:
                raise InvalidTransition(self.status_kind, old_status, new_status, code="concurrent_change")
        for name, value in fields.items():
            setattr(self, name, value)
        if save and self.pk is None:
            self.save()


def transition_rows(
    rows: models.QuerySet[Any], new_status: str, *, from_statuses: Iterable[str] | None = None, **changes: Any
) -> int:
    """The bulk form of `transition_to`: one UPDATE of the rows of `rows` whose status may enter
    `new_status` (the table's sources, or `from_statuses` when the caller narrows them: each must
    be one, or `new_status` itself for rows that stay and only change `changes`, e.g. a retry
    postponed again). Returns how many rows it wrote; `updated_at` is written too."""
    model = rows.model
    sources = status_sources(model.status_kind, new_status)
    if from_statuses is not None:
        narrowed = frozenset(str(status) for status in from_statuses)
        for source in narrowed - {str(new_status)}:
            check_transition(model.status_kind, source, new_status)
        sources = narrowed
    fields = {**changes, "status": new_status}
    if any(field.name == "updated_at" for field in model._meta.concrete_fields):
        fields.setdefault("updated_at", Now())
    return rows.filter(status__in=sorted(sources)).update(**fields)


def status_move_sql(kind: str, new_status: str, *, from_statuses: Iterable[str], alias: str = "") -> tuple[str, str]:
    """The SET and WHERE parts of a status move for the hot path's hand-written SQL (prepared
    statements, where `transition_rows` cannot go), checked against the table of `kind` when the
    statement is built: `("status = 'sent'", "c.status IN ('sending')")`. Statuses are the
    enums' constants, never input."""
    sources = sorted(str(status) for status in from_statuses)
    for source in sources:
        check_transition(kind, source, new_status)
    column = f"{alias}.status" if alias else "status"
    return f"status = '{new_status}'", f"{column} IN ({', '.join(repr(s) for s in sources)})"
