"""One way to change a row's status: check the transition table, then compare-and-swap.

The UPDATE carries the status we read in its WHERE clause, so two processes acting on the
same row cannot both win: the loser gets `InvalidTransition(code="concurrent_change")`
instead of silently overwriting the winner (e.g. a pause racing a completion).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.billing.constants import InvalidTransition, check_transition


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
