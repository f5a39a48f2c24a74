"""Redis stops for 15 s in the middle of a paced queue (issue 15, item 4), with real processes:
the API answers 503, never 500; the consumer sends nothing it cannot pace, does not crash, and
goes on by itself when Redis is back — which comes back empty, so the pace is recovered from
PostgreSQL: nothing is sent twice and no two sends come closer than the pace allows."""

from __future__ import annotations

import shutil
import time
from collections import Counter

import pytest

from apps.billing.tests.support.processes import (
    assert_paced,
    notification_contacts,
    sandbox_times,
    wait_started,
    wait_until,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary"),
]

OUTAGE_SECONDS = 15
INTERVAL = 0.5  # 120 messages a minute


def test_redis_stopped_mid_queue_no_500_no_duplicate_pace_held(private_redis, pipeline_tenant, start_process):
    tenant = pipeline_tenant(messages_per_minute=int(60 / INTERVAL))
    consumer = start_process("run_billing_consumer", "--concurrency", "2")
    wait_started(consumer)
    body = tenant.send("notification", notification_contacts(20))
    wait_until(lambda: len(tenant.messages()) >= 4, timeout=30, what="first messages", alive=[consumer])

    private_redis.stop()
    stopped_at = time.time()
    send = tenant.client.post(
        "/api/v1/billing/send/notification",
        content_type="application/json",
        data={"external_id": "during", "contacts": notification_contacts(1, start=500)},
        HTTP_X_BILLING_API_KEY=tenant.raw_key,
    )
    status = tenant.client.get(
        f"/api/v1/billing/queue/{body['queue_id']}/status", HTTP_X_BILLING_API_KEY=tenant.raw_key
    )
    assert (send.status_code, status.status_code) == (503, 503), (send.content, status.content)
    assert send.json()["error"]["code"] == "service_unavailable" and int(send["Retry-After"]) >= 1
    time.sleep(2)  # a send already past its pace check when Redis went may still land
    during = len(tenant.messages())
    time.sleep(OUTAGE_SECONDS - 2)
    assert len(tenant.messages()) == during, "sent while the pace could not be proved"
    assert consumer.process.poll() is None, "the consumer must wait, not crash"

    private_redis.start()  # back, and empty: no pace key, no holds
    queue = wait_until(
        lambda: (q := tenant.queue(body["queue_id"])).status == "completed" and q,
        timeout=60,
        what="the queue completes after Redis is back",
        alive=[consumer],
    )
    assert queue.sent_count == 20
    numbers = Counter(m["number"] for m in tenant.messages())
    assert len(numbers) == 20 and set(numbers.values()) == {1}
    arrivals = sandbox_times(tenant.messages())
    resumed = [t.timestamp() for t in arrivals if t.timestamp() > stopped_at + OUTAGE_SECONDS - 1]
    assert resumed and resumed[0] - (stopped_at + OUTAGE_SECONDS) < 10, "moving again within seconds"
    assert_paced(arrivals, INTERVAL)
    waits = [line for line in consumer.log_lines() if line.get("message") == "billing queue waits for Redis"]
    assert waits, "the consumer noticed the outage and waited"
