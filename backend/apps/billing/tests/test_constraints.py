"""Rules the database holds, hit through the ORM (not through clean()): each raises
IntegrityError even when application code forgets to check."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F

from apps.billing.constants import TemplateType
from apps.billing.models import (
    BillingCampaign,
    BillingConfig,
    BillingContact,
    BillingQueue,
    BillingTemplate,
    BillingTemplateVariation,
)
from apps.billing.tests.support.builders import build_contact, build_queue, build_template
from apps.campaigns.models import Campaign

pytestmark = pytest.mark.django_db


def _violates(name: str):
    """Expect an IntegrityError naming constraint `name`."""
    return pytest.raises(IntegrityError, match=name)


def _campaign(tenant, template, external_id, template_type=None):
    return BillingCampaign.objects.create(
        tenant=tenant,
        campaign=Campaign.objects.create(tenant=tenant, name="c"),
        template=template,
        template_type=template_type or template.template_type,
        external_id=external_id,
    )


def test_external_id_is_unique_per_tenant_and_type(tenant, other_tenant):
    overdue = build_template(tenant, template_type=TemplateType.OVERDUE)
    upcoming = build_template(tenant, template_type=TemplateType.UPCOMING)
    _campaign(tenant, overdue, "INV-1")
    _campaign(tenant, upcoming, "INV-1")  # same id, other type: a different request
    _campaign(other_tenant, build_template(other_tenant), "INV-1")  # other tenant
    with _violates("billing_campaign_unique_external_id"), transaction.atomic():
        _campaign(tenant, overdue, "INV-1")


def test_external_id_cannot_be_blank(tenant, template):
    with _violates("billing_campaign_external_id_not_blank"):
        _campaign(tenant, template, "")


def test_at_most_one_default_template_per_tenant_and_type(tenant, other_tenant):
    build_template(tenant, template_type=TemplateType.OVERDUE, is_default=True)
    build_template(tenant, template_type=TemplateType.UPCOMING, is_default=True)
    build_template(tenant, template_type=TemplateType.OVERDUE, is_default=False)
    build_template(other_tenant, template_type=TemplateType.OVERDUE, is_default=True)
    with _violates("billing_template_one_default_per_type"):
        BillingTemplate.objects.create(
            tenant=tenant, name="second default", template_type=TemplateType.OVERDUE, is_default=True
        )


def test_a_default_template_must_be_active(tenant):
    with _violates("billing_template_default_is_active"):
        BillingTemplate.objects.create(
            tenant=tenant, name="x", template_type="overdue", is_default=True, is_active=False
        )


def test_template_names_are_unique_per_tenant(tenant, other_tenant):
    build_template(tenant, name="Cobrança")
    build_template(other_tenant, name="Cobrança")
    with _violates("billing_template_unique_name"):
        build_template(tenant, name="Cobrança")


def test_unknown_template_type_is_refused(tenant):
    with _violates("billing_template_type_valid"):
        BillingTemplate.objects.create(tenant=tenant, name="x", template_type="spam")


@pytest.mark.parametrize(
    "field",
    [
        "total_contacts",
        "sent_count",
        "failed_count",
        "cancelled_count",
        "skipped_count",
        "delivered_count",
        "read_count",
        "replied_count",
    ],
)
def test_queue_counters_never_go_negative(tenant, field):
    queue = build_queue(tenant, total=0)
    with pytest.raises(IntegrityError):
        BillingQueue.objects.filter(pk=queue.pk).update(**{field: F(field) - 1})


def test_queue_cannot_count_more_processed_contacts_than_it_has(tenant):
    queue = build_queue(tenant, total=2)
    BillingQueue.objects.filter(pk=queue.pk).update(sent_count=1, failed_count=1)
    with _violates("billing_queue_processed_within_total"):
        BillingQueue.objects.filter(pk=queue.pk).update(skipped_count=F("skipped_count") + 1)


def test_queue_status_must_be_a_known_status(tenant):
    queue = build_queue(tenant)
    with _violates("billing_queue_status_valid"):
        BillingQueue.objects.filter(pk=queue.pk).update(status="exploded")


@pytest.mark.parametrize(
    "field", ["used_count", "sent_count", "failed_count", "delivered_count", "read_count", "replied_count"]
)
def test_variation_counters_never_go_negative(template, field):
    variation = template.variations.first()
    with pytest.raises(IntegrityError):
        BillingTemplateVariation.objects.filter(pk=variation.pk).update(**{field: F(field) - 1})


def test_variation_weight_is_at_least_one(template):
    with _violates("billing_variation_weight_positive"):
        BillingTemplateVariation.objects.filter(template=template).update(weight=0)


def test_contact_status_and_error_code_must_be_known(queue):
    contact = build_contact(queue)
    with _violates("billing_contact_status_valid"), transaction.atomic():
        BillingContact.objects.filter(pk=contact.pk).update(status="lost")
    with _violates("billing_contact_error_code_valid"), transaction.atomic():
        BillingContact.objects.filter(pk=contact.pk).update(error_code="oops")
    with pytest.raises(IntegrityError):
        BillingContact.objects.filter(pk=contact.pk).update(attempts=F("attempts") - 1)


def test_one_config_per_tenant_with_positive_pace(tenant):
    config = BillingConfig.for_tenant(tenant)
    assert BillingConfig.for_tenant(tenant).pk == config.pk
    with _violates("billing_config_positive_limits"), transaction.atomic():
        BillingConfig.objects.filter(pk=config.pk).update(messages_per_minute=0)
    with pytest.raises(IntegrityError):
        BillingConfig.objects.create(tenant=tenant)
