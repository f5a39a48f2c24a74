"""Warm-up caps: a brand-new number sends at most its day's cap, its queue pauses until the next
day (the tenant's zone) saying why, resumes by itself then, and the ETA counts the cap. Runs the
real runner in-process against the sandbox, the database and Redis; the day moves with
time-machine."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest
import time_machine
from django.utils import timezone

from apps.billing.broker.messages import BillingMessage
from apps.billing.dispatch import control
from apps.billing.services.daily_cap import NumberQuota, number_key
from apps.billing.services.eta import DailyCapPlan, estimate_completion
from apps.billing.tests.support.dispatch import run_queue
from apps.billing.tests.support.processes import notification_contacts
from apps.connections.models import WhatsAppInstance
from apps.connections.services import skip_warm_up
from apps.connections.warmup import WarmUp, WarmUpSchedule

from .conftest import health_settings

pytestmark = pytest.mark.django_db(transaction=True)


def next_midnight(tz) -> datetime:
    return datetime.combine(timezone.now().astimezone(tz).date() + timedelta(days=1), time.min, tz)


def status(tenant, queue_id: str) -> dict:
    response = tenant.client.get(f"/api/v1/billing/queue/{queue_id}/status", HTTP_X_BILLING_API_KEY=tenant.raw_key)
    assert response.status_code == 200, response.content
    return response.json()


def test_the_ingest_answer_already_counts_a_new_numbers_cap(fresh_tenant):
    """The 202's ETA and the status ETA read the cap the same way: 25 messages on a day-0 number
    (cap 20) cannot all go today."""
    tz = fresh_tenant.tenant.tzinfo
    small = fresh_tenant.send("notification", notification_contacts(5, start=100), external_id="small")
    assert datetime.fromisoformat(small["eta"]) < next_midnight(tz)  # hours always open, 60,000 a minute
    body = fresh_tenant.send("notification", notification_contacts(25))
    assert datetime.fromisoformat(body["eta"]) >= next_midnight(tz)


def test_a_new_number_stops_at_its_day_0_cap_and_resumes_the_next_day(fresh_tenant):
    tz = fresh_tenant.tenant.tzinfo
    body = fresh_tenant.send("notification", notification_contacts(25))

    result = run_queue(body["queue_id"])

    queue = fresh_tenant.queue(body["queue_id"])
    assert result.outcome == "paused_business_hours" and len(fresh_tenant.messages()) == 20
    assert queue.status == "paused_business_hours" and queue.sent_count == 20
    assert queue.pause_reason.startswith("daily_cap: 20/20 messages sent today through this number (warm-up day 0)")
    assert queue.next_resume_at == next_midnight(tz)
    assert datetime.fromisoformat(status(fresh_tenant, body["queue_id"])["eta"]) >= next_midnight(tz)

    with time_machine.travel(next_midnight(tz) + timedelta(minutes=1), tick=True):
        assert (
            control.resume(
                BillingMessage(type="resume", queue_id=body["queue_id"], tenant_id=str(fresh_tenant.tenant.pk))
            )
            == 1
        )
        result = run_queue(body["queue_id"])

    assert result.outcome == "completed" and len(fresh_tenant.messages()) == 25
    assert fresh_tenant.queue(body["queue_id"]).sent_count == 25


def test_two_queues_share_the_numbers_cap(fresh_tenant):
    health_settings(fresh_tenant.tenant, warmup_schedule=[[0, 6], [4, 50]])
    first = fresh_tenant.send("notification", notification_contacts(4), external_id="a")
    second = fresh_tenant.send("notification", notification_contacts(4, start=50), external_id="b")

    assert run_queue(first["queue_id"]).outcome == "completed"
    assert run_queue(second["queue_id"]).outcome == "paused_business_hours"

    assert len(fresh_tenant.messages()) == 6
    assert fresh_tenant.queue(second["queue_id"]).pause_reason.startswith("daily_cap: 6/6")


def test_the_count_survives_redis_losing_it(fresh_tenant):
    from apps.common.redis_client import get_redis

    health_settings(fresh_tenant.tenant, warmup_schedule=[[0, 5], [4, 50]])
    first = fresh_tenant.send("notification", notification_contacts(3), external_id="a")
    assert run_queue(first["queue_id"]).outcome == "completed"
    for key in get_redis().scan_iter(match="billing:daily-sends:*"):
        get_redis().delete(key)  # what a flush or a restart without persistence does

    second = fresh_tenant.send("notification", notification_contacts(5, start=50), external_id="b")
    assert run_queue(second["queue_id"]).outcome == "paused_business_hours"

    assert len(fresh_tenant.messages()) == 5  # PostgreSQL remembered the first three


def test_a_skipped_warm_up_has_no_cap(fresh_tenant, django_user_model):
    user = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    instance = WhatsAppInstance.objects.get(pk=fresh_tenant.instance.pk)
    assert skip_warm_up(instance=instance, user=user, reason="migrated from the old bot, two years of history")
    body = fresh_tenant.send("notification", notification_contacts(25))

    assert run_queue(body["queue_id"]).outcome == "completed"

    instance.refresh_from_db()
    assert (instance.warmup_skipped_by, instance.warmup_skip_reason) == (
        user,
        "migrated from the old bot, two years of history",
    )
    assert not skip_warm_up(instance=instance, user=user, reason="again")  # once


# ----------------------------------------------------------------------------- pure parts
SCHEDULE = WarmUpSchedule()


def test_the_default_schedule_grows_with_the_numbers_age():
    caps = [SCHEDULE.cap_for_age(day) for day in (0, 3, 4, 7, 8, 14, 15, 30, 31, 400)]
    assert caps == [20, 20, 50, 50, 100, 100, 200, 200, None, None]


@pytest.mark.parametrize(
    "steps,uncapped,message",
    [
        ([], 31, "at least one step"),
        ([[1, 20]], 31, "start at day 0"),
        ([[0, 20], [0, 30]], 31, "strictly up"),
        ([[0, 0]], 31, "at least 1"),
        ([[0, 20], [40, 50]], 31, "after the last step"),
        ([[0, "20"]], 31, "whole numbers"),
    ],
)
def test_a_bad_schedule_is_refused_with_a_reason(steps, uncapped, message):
    with pytest.raises(ValueError, match=message):
        WarmUpSchedule.from_steps(steps, uncapped_from_day=uncapped)


def test_the_schedule_reads_and_writes_the_admins_text():
    schedule = WarmUpSchedule.parse("0:10, 3:40", uncapped_from_day=10)
    assert schedule.steps == ((0, 10), (3, 40)) and schedule.as_text() == "0:10, 3:40"
    with pytest.raises(ValueError, match="day:cap"):
        WarmUpSchedule.parse("0-10", uncapped_from_day=10)


def test_the_eta_counts_the_cap_day_by_day():
    tz = timezone.get_default_timezone()
    start = datetime(2026, 12, 7, 10, 0, tzinfo=tz)
    warm_up = WarmUp(started_on=start.date(), skipped=False, schedule=SCHEDULE)

    # 45 messages at 60 a minute: 5 more today (15 already sent), 20 on day 1, 20 on day 2.
    eta = estimate_completion(
        start=start, messages=45, messages_per_minute=60, daily_cap=DailyCapPlan(warm_up=warm_up, tz=tz, sent_today=15)
    )
    assert eta == datetime(2026, 12, 9, 0, 0, 20, tzinfo=tz)
    # uncapped: 45 seconds
    assert estimate_completion(start=start, messages=45, messages_per_minute=60) == start + timedelta(seconds=45)
    # a number past its warm-up: the pace alone
    old = WarmUp(started_on=start.date() - timedelta(days=60), skipped=False, schedule=SCHEDULE)
    assert estimate_completion(
        start=start, messages=45, messages_per_minute=60, daily_cap=DailyCapPlan(warm_up=old, tz=tz, sent_today=0)
    ) == start + timedelta(seconds=45)


def test_the_quota_key_is_the_physical_number_and_its_local_day():
    quota = NumberQuota(
        number_key=number_key("http://evo/", "main"),
        tz=timezone.get_default_timezone(),
        instance_ids=(1,),
        warm_up=WarmUp(started_on=datetime(2026, 1, 1).date(), skipped=True, schedule=SCHEDULE),
    )
    assert number_key("http://evo", "main") == number_key("http://evo/", "main") != number_key("http://evo", "x")
    assert quota.take(timezone.now()).cap is None  # skipped: not even counted
