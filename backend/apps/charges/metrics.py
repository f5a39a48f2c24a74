"""Charges metrics, defined once; call sites use the `observe_*` functions, which never raise.
Labels are bounded: an Asaas outcome (9 values), a step outcome (queued or a skip reason)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import Counter

logger = logging.getLogger(__name__)

ASAAS_EVENTS = Counter(
    "charges_asaas_events_total",
    "Asaas webhook events by outcome: applied, unchanged, stale (older than what was applied), refused, "
    "duplicate, unknown_charge, ignored (an event we do not act on), unauthorized, malformed.",
    ["outcome"],
)
CADENCE_STEPS = Counter(
    "charges_cadence_steps_total",
    "Cadence steps decided by the charges job: queued, or the skip reason (opted_out, daily_cap, superseded, "
    "past_due, after_hours, or an ingest refusal code).",
    ["outcome"],
)


def observe_asaas_event(outcome: str) -> None:
    try:
        ASAAS_EVENTS.labels(outcome=outcome).inc()
    except Exception:
        logger.exception("charges metric failed")


def observe_steps(*, queued: int, skipped: Mapping[str, int]) -> None:
    try:
        if queued:
            CADENCE_STEPS.labels(outcome="queued").inc(queued)
        for reason, count in skipped.items():
            CADENCE_STEPS.labels(outcome=reason[:40]).inc(count)
    except Exception:
        logger.exception("charges metric failed")
