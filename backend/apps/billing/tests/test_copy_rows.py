"""`copy_insert` (charges writes its step runs with it beside an ingest): rows as the ORM would
write them, ids drawn in row order when asked for."""

from __future__ import annotations

import pytest

from apps.billing.services.copy_rows import copy_insert
from apps.campaigns.models import Campaign, CampaignContact

pytestmark = pytest.mark.django_db


def test_copy_insert_writes_the_rows_with_the_model_defaults_and_returns_their_ids(tenant):
    campaign = Campaign.objects.create(tenant=tenant, name="c")
    rows = [("+5511970000001", "Ana"), ("+5511970000002", "Bia"), ("+5511970000003", "")]
    ids = copy_insert(
        CampaignContact, CampaignContact(tenant=tenant, campaign=campaign), ("phone", "name"), rows, return_ids=True
    )
    stored = list(CampaignContact.objects.filter(campaign=campaign).order_by("id"))
    assert [c.pk for c in stored] == ids
    assert [(c.phone, c.name) for c in stored] == rows
    assert all(c.tenant_id == tenant.pk and c.created_at is not None for c in stored)
