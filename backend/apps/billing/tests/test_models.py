"""Model behaviour beyond the database rules: config helpers, progress, validation."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.billing.constants import MAX_ACTIVE_VARIATIONS, QueueStatus, TemplateType
from apps.billing.models import BillingConfig, BillingTemplate, BillingTemplateVariation
from apps.billing.tests.support.builders import CREDITOR_LINE, build_contact, build_queue, build_template
from apps.connections.models import WhatsAppInstance

pytestmark = pytest.mark.django_db


def _instance(tenant, name="main"):
    return WhatsAppInstance.objects.create(
        tenant=tenant, name=name, base_url="http://127.0.0.1:8081", api_key="k", instance_name=name
    )


def test_config_defaults_and_business_hours_switches(tenant):
    config = BillingConfig.for_tenant(tenant)
    assert (config.messages_per_minute, config.batch_size, config.max_attempts) == (20, 100, 3)
    assert (config.stale_threshold_seconds, config.health_cache_seconds) == (600, 5)
    assert config.max_contacts_per_request == 10000 and config.api_rate_limit_per_minute == 60
    assert config.respects_business_hours(TemplateType.OVERDUE)
    assert config.respects_business_hours("upcoming")
    assert not config.respects_business_hours(TemplateType.NOTIFICATION)  # 24/7 by default
    assert len(config.callback_secret) >= 40
    with pytest.raises(ValueError):
        config.respects_business_hours("spam")
    assert config.callback_secret not in repr(config)


def test_config_default_instance_must_belong_to_the_tenant(tenant, other_tenant):
    config = BillingConfig.for_tenant(tenant)
    config.default_instance = _instance(other_tenant)
    with pytest.raises(ValidationError, match="same tenant"):
        config.full_clean()
    config.default_instance = _instance(tenant)
    config.full_clean()


def test_queue_progress_counts_delivered_and_read_inside_sent(tenant):
    queue = build_queue(
        tenant,
        total=10,
        sent_count=4,
        delivered_count=3,
        read_count=2,
        failed_count=1,
        cancelled_count=1,
        skipped_count=1,
    )
    assert queue.pending_count == 3
    assert queue.progress_percent == 70.0
    empty = build_queue(tenant, total=0)
    assert empty.progress_percent == 0.0
    empty.transition_to(QueueStatus.CANCELLED)
    assert empty.progress_percent == 100.0


def test_sixth_active_variation_is_refused_with_a_clear_message(tenant):
    template = build_template(tenant, variations=MAX_ACTIVE_VARIATIONS)
    sixth = BillingTemplateVariation(template=template, name="V6", content="Olá {{nome}}" + CREDITOR_LINE)
    with pytest.raises(ValidationError, match="at most 5 active variations"):
        sixth.full_clean()
    sixth.is_active = False  # inactive variations do not count
    sixth.full_clean()
    sixth.save()
    existing = template.variations.get(name="V1")
    existing.content = "Olá de novo, {{nome}}" + CREDITOR_LINE
    existing.full_clean()  # editing one of the five is fine


def test_variation_content_is_sanitised_and_checked_by_the_engine(template):
    variation = BillingTemplateVariation(template=template, name="html", content="<b>Olá</b> {{nome}}" + CREDITOR_LINE)
    variation.full_clean()
    assert variation.content == "Olá {{nome}}" + CREDITOR_LINE
    broken = BillingTemplateVariation(template=template, name="broken", content="Olá\n{{#if nome}}sem fim")
    with pytest.raises(ValidationError) as exc:
        broken.full_clean()
    assert "content" in exc.value.message_dict
    assert "line" in exc.value.message_dict["content"][0]


def test_template_validates_variable_names_and_default_rules(tenant):
    template = BillingTemplate(tenant=tenant, name="x", template_type="overdue", required_variables=["ok", "not ok"])
    with pytest.raises(ValidationError, match="not ok"):
        template.full_clean()
    build_template(tenant, template_type="overdue", is_default=True)
    second = BillingTemplate(tenant=tenant, name="y", template_type="overdue", is_default=True)
    with pytest.raises(ValidationError, match="already has a default template"):
        second.full_clean()
    assert BillingTemplate.objects.default_for(tenant, "overdue").is_default


def test_variation_rates(template):
    variation = template.variations.first()
    assert variation.delivery_rate is None
    variation.sent_count, variation.delivered_count, variation.read_count, variation.failed_count = 10, 8, 5, 10
    assert (variation.delivery_rate, variation.read_rate, variation.failure_rate) == (80.0, 50.0, 50.0)


def test_contact_never_shows_the_raw_phone_in_its_text_forms(queue):
    contact = build_contact(queue, phone="+5511998764321")
    assert "98764321" not in str(contact) and "98764321" not in repr(contact)
    assert contact.masked_phone == "+55 11 9****-4321"
