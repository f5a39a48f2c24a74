"""The billing metrics record what the helpers are told, with bounded labels, and never raise."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from apps.billing import metrics
from apps.billing.tests.support.api import contacts
from apps.billing.tests.support.builders import build_queue, build_template, build_tenant


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestSendMetrics:
    def test_a_send_counts_the_attempt_its_duration_and_the_instance_pace(self, settings):
        settings.BILLING_METRICS_TENANT_LABEL = False
        before = sample("billing_messages_sent_total", tenant_id="all", template_type="overdue", status="sent")
        before_count = sample("billing_send_duration_seconds_count", tenant_id="all", template_type="overdue")
        before_instance = sample("billing_instance_sends_total", instance_id="77")
        metrics.observe_send("tenant-uuid", "overdue", "sent", 0.42, instance_id=77)
        assert (
            sample("billing_messages_sent_total", tenant_id="all", template_type="overdue", status="sent") == before + 1
        )
        assert (
            sample("billing_send_duration_seconds_count", tenant_id="all", template_type="overdue") == before_count + 1
        )
        assert sample("billing_instance_sends_total", instance_id="77") == before_instance + 1

    def test_the_tenant_label_is_a_setting(self, settings):
        settings.BILLING_METRICS_TENANT_LABEL = True
        metrics.observe_send("t-42", "upcoming", "failed")
        assert sample("billing_messages_sent_total", tenant_id="t-42", template_type="upcoming", status="failed") >= 1
        # No provider call (a render error): no duration, no pace sample.
        assert sample("billing_send_duration_seconds_count", tenant_id="t-42", template_type="upcoming") == 0

    def test_unknown_labels_are_refused_without_breaking_the_caller(self, caplog):
        metrics.observe_send("t", "overdue", "exploded", 1.0)
        metrics.observe_delivery("billing.overdue", "whatever")
        assert sample("billing_messages_sent_total", tenant_id="all", template_type="overdue", status="exploded") == 0
        assert "billing metric not recorded" in caplog.text

    def test_deliveries_throttle_waits_runs_and_publishes(self):
        before = sample("billing_consumer_deliveries_total", queue="billing.overdue", outcome="claimed")
        metrics.observe_delivery("billing.overdue", "claimed")
        assert sample("billing_consumer_deliveries_total", queue="billing.overdue", outcome="claimed") == before + 1
        before = sample("billing_throttle_wait_seconds_sum", template_type="notification")
        metrics.observe_throttle_wait(2.5, "notification")
        assert sample("billing_throttle_wait_seconds_sum", template_type="notification") == pytest.approx(before + 2.5)
        before = sample("billing_worker_runs_total", outcome="completed")
        metrics.observe_worker_run("completed")
        assert sample("billing_worker_runs_total", outcome="completed") == before + 1
        before = sample("billing_broker_publishes_total", kind="send", outcome="failed")
        metrics.observe_publish("send", False)
        assert sample("billing_broker_publishes_total", kind="send", outcome="failed") == before + 1


class TestQueueGauges:
    def test_it_counts_open_queues_per_status_and_their_backlog(self, db):
        tenant = build_tenant("gauges")
        overdue = build_template(tenant, template_type="overdue")
        build_queue(tenant, template=overdue, total=10, sent_count=4, status="running")
        build_queue(tenant, template=overdue, total=5, status="paused_business_hours")
        build_queue(tenant, template=overdue, total=7, sent_count=7, status="completed")
        counts = metrics.update_queue_gauges()
        assert counts["running"] >= 1 and counts["paused_business_hours"] >= 1 and "completed" not in counts
        assert sample("billing_active_queues", status="running") == counts["running"]
        assert sample("billing_active_queues", status="instance_down") == counts["instance_down"]
        assert sample("billing_queue_backlog_contacts", template_type="overdue") >= 6 + 5

    def test_the_query_count_does_not_grow_with_the_number_of_queues(self, db, django_assert_max_num_queries):
        tenant = build_tenant("gauges-many")
        template = build_template(tenant)
        for _ in range(20):
            build_queue(tenant, template=template, total=3)
        with django_assert_max_num_queries(1):
            metrics.update_queue_gauges()


def test_an_accepted_send_request_records_its_size(api):
    before_count = sample("billing_ingest_contacts_count", template_type="notification")
    before_sum = sample("billing_ingest_contacts_sum", template_type="notification")
    response = api.send("notification", {"external_id": "metrics-1", "contacts": contacts(3)})
    assert response.status_code == 202, response.content
    assert sample("billing_ingest_contacts_count", template_type="notification") == before_count + 1
    assert sample("billing_ingest_contacts_sum", template_type="notification") == before_sum + 3


@pytest.fixture
def api(db):
    from apps.billing.tests.support.api import make_tenant

    return make_tenant("metricsapi")
