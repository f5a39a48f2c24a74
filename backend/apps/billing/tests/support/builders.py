"""Billing test data, built through the models' own helpers: plain functions (the billing
conftest wraps a few in fixtures); each creates only what it needs so the transition tests (one
row per case) stay fast."""

from __future__ import annotations

import itertools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from apps.billing.constants import RotationStrategy, TemplateType
from apps.billing.models import (
    BillingCampaign,
    BillingContact,
    BillingQueue,
    BillingTemplate,
    BillingTemplateVariation,
)
from apps.campaigns.models import Campaign, CampaignContact
from apps.tenancy.models import Membership, Tenant

_counter = itertools.count(1)
# Who collects (CDC art. 42-A): tenant settings for setup_tenant, and the line a collection
# template must print to be saved through the admin.
CREDITOR = {"creditor_legal_name": "Clínica Exemplo Ltda.", "creditor_document": "11.222.333/0001-81"}
CREDITOR_LINE = " Credor: {{creditor_name}}, {{creditor_document}}."


def build_tenant(slug: str | None = None) -> Tenant:
    slug = slug or f"tenant-{next(_counter)}"
    return Tenant.objects.create(name=slug.title(), slug=slug)


def build_template(
    tenant: Tenant,
    *,
    template_type: str = TemplateType.OVERDUE,
    strategy: str = RotationStrategy.RANDOM,
    variations: list[dict[str, Any]] | int = 1,
    name: str | None = None,
    **fields: Any,
) -> BillingTemplate:
    """A template with variations: an int makes that many (`V1`…), dicts set their fields.
    Rows are inserted without `clean()` so tests can set up states the admin would refuse."""
    template = BillingTemplate.objects.create(
        tenant=tenant,
        name=name or f"template {next(_counter)}",
        template_type=template_type,
        rotation_strategy=strategy,
        **fields,
    )
    specs = [{} for _ in range(variations)] if isinstance(variations, int) else variations
    for index, spec in enumerate(specs, start=1):
        BillingTemplateVariation.objects.create(
            template=template, **{"name": f"V{index}", "content": f"Olá {{{{nome}}}}, mensagem {index}.", **spec}
        )
    return template


def build_queue(
    tenant: Tenant, *, template: BillingTemplate | None = None, total: int = 0, **fields: Any
) -> BillingQueue:
    template = template or build_template(tenant)
    campaign = Campaign.objects.create(tenant=tenant, name="billing", source=Campaign.Source.BILLING)
    billing_campaign = BillingCampaign.objects.create(
        tenant=tenant,
        campaign=campaign,
        template=template,
        template_type=template.template_type,
        external_id=f"ext-{next(_counter)}",
    )
    return BillingQueue.objects.create(
        tenant=tenant,
        billing_campaign=billing_campaign,
        template_type=template.template_type,
        priority=TemplateType.priority_of(template.template_type),
        total_contacts=total,
        **fields,
    )


def build_contact(
    queue: BillingQueue, *, phone: str | None = None, name: str = "Maria", **fields: Any
) -> BillingContact:
    phone = phone or f"+55119{next(_counter):08d}"
    campaign_contact = CampaignContact.objects.create(
        tenant=queue.tenant, campaign=queue.billing_campaign.campaign, phone=phone, name=name
    )
    return BillingContact.objects.create(
        tenant=queue.tenant,
        billing_campaign=queue.billing_campaign,
        queue=queue,
        campaign_contact=campaign_contact,
        phone=phone,
        name=name,
        **fields,
    )


def build_staff(tenant: Tenant, username: str | None = None):
    """A staff user attached to `tenant`, with every billing permission (but not superuser)."""
    user = get_user_model().objects.create_user(username or f"staff-{next(_counter)}", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="billing"))
    Membership.objects.create(user=user, tenant=tenant)
    return user


def inline_management(total: int, initial: int = 0) -> dict[str, str]:
    return {
        "variations-TOTAL_FORMS": str(total),
        "variations-INITIAL_FORMS": str(initial),
        "variations-MIN_NUM_FORMS": "0",
        "variations-MAX_NUM_FORMS": "1000",
    }


def template_post(name: str, variations: list[dict], template_type: str = "overdue", **extra) -> dict[str, str]:
    """The admin's add-template form, with its inline variations, as a browser posts it."""
    data = {
        "name": name,
        "template_type": template_type,
        "rotation_strategy": "random",
        "is_active": "on",
        "required_variables": "[]",
        "description": "",
        **inline_management(len(variations)),
        **extra,
    }
    for i, variation in enumerate(variations):
        data.update({f"variations-{i}-{k}": v for k, v in variation.items()})
    return data
