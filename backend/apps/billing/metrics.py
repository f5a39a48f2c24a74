"""Every billing metric, defined once, and the small functions the code calls to record them.

Call sites use the `observe_*` functions, never the metric objects: labels stay bounded and
spelled in one place, and a metrics failure can never break a send (each function swallows
and logs its own errors). The provider client's metrics (request outcomes and latency, breaker
state) live with the client in `apps.common.metrics` and are re-exported here, so this module
lists everything there is. docs/operations.md ("Metrics") says what each one means.

Labels are bounded ("The Zen of Prometheus"): template type (3), status/outcome (small fixed
sets), RabbitMQ queue name (7), WhatsApp instance id (a handful per deployment). `tenant_id`
is a real value only with `BILLING_METRICS_TENANT_LABEL=1`, for deployments with few tenants;
otherwise it is "all".
"""

from __future__ import annotations

import logging

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram

from apps.common.metrics import (  # noqa: F401 - re-exported: the full list lives here
    API_REQUEST_DURATION,
    API_REQUESTS,
    EVOLUTION_BREAKER_STATE,
    EVOLUTION_REQUEST_DURATION,
    EVOLUTION_REQUESTS,
)

logger = logging.getLogger(__name__)

ALL_TENANTS = "all"

# Outcome of one send attempt, as the worker recorded it.
SEND_STATUSES = frozenset({"sent", "failed", "retry", "skipped", "unconfirmed"})
# What the consumer did with one delivery.
DELIVERY_OUTCOMES = frozenset(
    {
        "claimed",  # the queue was claimed: a worker runs it
        "not_claimed",  # duplicate / not due / finished: acked and dropped
        "requeued",  # shutting down, or the claim failed: nacked with requeue
        "rejected",  # unparseable or invalid: dead-lettered
        "handled",  # a control message ran
        "failed",  # a control message raised
    }
)

MESSAGES_SENT = Counter(
    "billing_messages_sent_total",
    "Send attempts by outcome: sent (provider accepted), failed (final), retry (will be tried "
    "again), skipped, unconfirmed (may have gone out: reconciliation decides).",
    ["tenant_id", "template_type", "status"],
)

SEND_DURATION = Histogram(
    "billing_send_duration_seconds",
    "Wall time of one send attempt through the provider client (render excluded).",
    ["tenant_id", "template_type"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

INSTANCE_SENDS = Counter(
    "billing_instance_sends_total",
    "Messages handed to the provider per WhatsApp instance (the pace actually achieved).",
    ["instance_id"],
)

ACTIVE_QUEUES = Gauge(
    "billing_active_queues",
    "Billing queues per non-final status (pending, running, paused, paused_business_hours, "
    "instance_down), as last counted by the periodic process.",
    ["status"],
    multiprocess_mode="mostrecent",
)

QUEUE_BACKLOG = Gauge(
    "billing_queue_backlog_contacts",
    "Contacts not yet processed in non-final queues, by template type (periodic process).",
    ["template_type"],
    multiprocess_mode="mostrecent",
)

THROTTLE_WAIT = Histogram(
    "billing_throttle_wait_seconds",
    "Time a worker waited for its instance's send slot (the shared per-instance pace).",
    ["template_type"],
    buckets=(0.0, 0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0),
)

CONSUMER_DELIVERIES = Counter(
    "billing_consumer_deliveries_total",
    "RabbitMQ deliveries handled by the consumer, by queue and outcome.",
    ["queue", "outcome"],
)

WORKER_RUNS = Counter(
    "billing_worker_runs_total",
    "Queues leaving a consumer process, by how (completed, paused_business_hours, instance_down, "
    "paused, released, waiting_retry, stopped, crashed).",
    ["outcome"],
)

DISPATCH_WAITS = Counter(
    "billing_dispatch_waits_total",
    "Steps that could not send because a dependency was unreachable (redis_unavailable, "
    "database_unavailable): the queue keeps its lease and looks again seconds later.",
    ["reason"],
)

HELD_QUEUES = Gauge(
    "billing_consumer_held_queues",
    "Queues this consumer process holds (waiting for their instant or being stepped).",
    multiprocess_mode="livesum",
)

DISPATCH_STEP_LAG = Histogram(
    "billing_dispatch_step_lag_seconds",
    "How late a step started after its instant (the sender threads' backlog).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)

RECONCILIATIONS = Counter(
    "billing_reconciliations_total",
    "Unconfirmed contacts settled, by outcome (sent: the provider had it; resent: provably never "
    "received, tried again; cancelled / failed: never received and not to be retried; "
    "still_unknown: no evidence within the window, failed/outcome_unknown) and by evidence "
    "(echo, provider_lookup, window).",
    ["outcome", "evidence"],
)

FAILING_WHILE_OPEN = Counter(
    "billing_instance_failing_while_open_total",
    "Sends that failed as 'instance unavailable' while the provider reported the instance open "
    "(a broken provider build or proxy): each counts toward the contact's max_attempts.",
    ["instance_id"],
)

PUBLISHES = Counter(
    "billing_broker_publishes_total",
    "Wake-up calls published to RabbitMQ by kind (send, control) and outcome (ok, failed).",
    ["kind", "outcome"],
)

INGEST_CONTACTS = Histogram(
    "billing_ingest_contacts",
    "Contacts accepted per send request.",
    ["template_type"],
    buckets=(1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10000),
)

PROGRESS_PUSHES = Counter(
    "billing_progress_pushes_total",
    "WebSocket progress updates by outcome (sent, throttled, failed).",
    ["outcome"],
)


def tenant_label(tenant_id: object) -> str:
    if not getattr(settings, "BILLING_METRICS_TENANT_LABEL", False) or tenant_id in (None, ""):
        return ALL_TENANTS
    return str(tenant_id)


def _safe(fn):
    """Metrics never break the caller: a bad label is logged once per call and ignored."""

    def wrapper(*args, **kwargs):
        try:
            fn(*args, **kwargs)
        except Exception:
            logger.warning("billing metric not recorded", extra={"metric_call": fn.__name__}, exc_info=True)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


# --------------------------------------------------------------------------- recording helpers
@_safe
def observe_send(
    tenant_id: object, template_type: str, status: str, seconds: float | None = None, *, instance_id: object = None
) -> None:
    """One send attempt ended with `status` (sent | failed | retry | skipped) after `seconds`
    in the provider client (None when no provider call was made, e.g. a render error)."""
    if status not in SEND_STATUSES:
        raise ValueError(f"unknown send status {status!r}")
    tenant = tenant_label(tenant_id)
    MESSAGES_SENT.labels(tenant_id=tenant, template_type=str(template_type), status=status).inc()
    if seconds is not None:
        SEND_DURATION.labels(tenant_id=tenant, template_type=str(template_type)).observe(max(seconds, 0.0))
    if instance_id is not None and seconds is not None:
        INSTANCE_SENDS.labels(instance_id=str(instance_id)).inc()


@_safe
def observe_throttle_wait(seconds: float, template_type: str = "") -> None:
    """A worker waited `seconds` for its send slot (0 when the slot was free)."""
    THROTTLE_WAIT.labels(template_type=str(template_type or "unknown")).observe(max(seconds, 0.0))


@_safe
def observe_delivery(queue: str, outcome: str) -> None:
    """The consumer handled one delivery from RabbitMQ queue `queue` (e.g. billing.overdue)."""
    if outcome not in DELIVERY_OUTCOMES:
        raise ValueError(f"unknown delivery outcome {outcome!r}")
    CONSUMER_DELIVERIES.labels(queue=str(queue or "unknown"), outcome=outcome).inc()


@_safe
def observe_worker_run(outcome: str) -> None:
    """A queue left this consumer process (its last step's outcome, or "crashed")."""
    WORKER_RUNS.labels(outcome=str(outcome)[:40]).inc()


@_safe
def observe_dispatch_wait(reason: str) -> None:
    DISPATCH_WAITS.labels(reason=reason).inc()


@_safe
def observe_held_queues(count: int) -> None:
    HELD_QUEUES.set(max(int(count), 0))


@_safe
def observe_step_lag(seconds: float) -> None:
    DISPATCH_STEP_LAG.observe(max(seconds, 0.0))


@_safe
def observe_reconciliation(outcome: str, evidence: str) -> None:
    RECONCILIATIONS.labels(outcome=outcome, evidence=evidence).inc()


@_safe
def observe_failing_while_open(instance_id: object) -> None:
    FAILING_WHILE_OPEN.labels(instance_id=str(instance_id)).inc()


@_safe
def observe_publish(kind: str, ok: bool) -> None:
    """One publish to RabbitMQ: kind "send" (a queue's wake-up call) or "control"."""
    PUBLISHES.labels(kind=kind, outcome="ok" if ok else "failed").inc()


@_safe
def observe_ingest(size: int, template_type: str = "") -> None:
    """A send request was accepted with `size` contacts."""
    INGEST_CONTACTS.labels(template_type=str(template_type or "unknown")).observe(max(int(size), 0))


@_safe
def observe_progress_push(outcome: str) -> None:
    PROGRESS_PUSHES.labels(outcome=outcome).inc()


def update_queue_gauges() -> dict[str, int]:
    """Count non-final queues per status and their unprocessed contacts; set the gauges.

    One aggregate query over the (status, …) index; the periodic process calls it every cycle.
    Statuses with no queue are set to 0 (a gauge that is never reset would show old counts).
    Returns the status counts (for logs and tests). Never raises.
    """
    from django.db.models import Count, F, Sum

    from apps.billing.constants import FINAL_QUEUE_STATUSES, QueueStatus, TemplateType
    from apps.billing.models import BillingQueue

    try:
        rows = list(
            BillingQueue.objects.exclude(status__in=list(FINAL_QUEUE_STATUSES))
            .values("status", "template_type")
            .annotate(
                queues=Count("id"),
                backlog=Sum(
                    F("total_contacts")
                    - F("sent_count")
                    - F("failed_count")
                    - F("cancelled_count")
                    - F("skipped_count")
                ),
            )
            .order_by()
        )
    except Exception:
        logger.warning("billing queue gauges not updated", exc_info=True)
        return {}
    counts = {status: 0 for status in QueueStatus.values if status not in FINAL_QUEUE_STATUSES}
    backlog = {template_type: 0 for template_type in TemplateType.values}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + int(row["queues"])
        backlog[row["template_type"]] = backlog.get(row["template_type"], 0) + max(int(row["backlog"] or 0), 0)
    for status, count in counts.items():
        ACTIVE_QUEUES.labels(status=status).set(count)
    for template_type, pending in backlog.items():
        QUEUE_BACKLOG.labels(template_type=template_type).set(pending)
    return counts
