from datetime import time

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from apps.campaigns.models import Campaign, CampaignContact
from apps.chat.models import BusinessHours, ClosedDate, Conversation
from apps.connections.models import WhatsAppInstance
from apps.tenancy.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant() -> Tenant:
    return Tenant.objects.create(name="Clinic", slug="clinic")


def test_tenant_defaults_to_sao_paulo_and_a_uuid(tenant):
    assert tenant.timezone == "America/Sao_Paulo"
    assert len(str(tenant.pk)) == 36


def test_tenant_slug_is_unique(tenant):
    with pytest.raises(IntegrityError):
        Tenant.objects.create(name="Other", slug="clinic")


def test_tenant_timezone_is_validated():
    with pytest.raises(ValidationError):
        Tenant(name="X", slug="x", timezone="Mars/Olympus").full_clean()


def test_business_hours_equal_open_and_close_is_a_full_day(tenant):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from apps.chat.services import BusinessHoursService

    BusinessHours.objects.create(tenant=tenant, weekday=0, opens_at=time(0), closes_at=time(0))
    monday_late = datetime(2026, 11, 23, 23, 59, tzinfo=ZoneInfo("America/Sao_Paulo"))
    assert BusinessHoursService.is_open(tenant, monday_late)


def test_business_hours_refuse_a_weekday_out_of_range(tenant):
    with pytest.raises(IntegrityError):
        BusinessHours.objects.create(tenant=tenant, weekday=7, opens_at=time(8), closes_at=time(9))


def test_closed_date_is_unique_per_tenant(tenant):
    ClosedDate.objects.create(tenant=tenant, date="2026-12-25")
    with pytest.raises(IntegrityError):
        ClosedDate.objects.create(tenant=tenant, date="2026-12-25")


def test_instance_name_is_unique_per_tenant_and_secret_is_generated(tenant):
    first = WhatsAppInstance.objects.create(
        tenant=tenant, name="main", base_url="http://127.0.0.1:8081", api_key="k", instance_name="demo"
    )
    assert len(first.webhook_secret) >= 32
    assert "k" not in repr(first)
    other = Tenant.objects.create(name="Other", slug="other")
    WhatsAppInstance.objects.create(tenant=other, name="main", base_url="http://x.test", api_key="k", instance_name="d")
    with pytest.raises(IntegrityError):
        WhatsAppInstance.objects.create(
            tenant=tenant, name="main", base_url="http://x.test", api_key="k", instance_name="d"
        )


def test_instance_base_url_must_be_http(tenant):
    instance = WhatsAppInstance(tenant=tenant, name="x", base_url="ftp://host", api_key="k", instance_name="d")
    with pytest.raises(ValidationError):
        instance.full_clean()


def test_one_conversation_per_contact_and_instance_even_without_instance(tenant):
    Conversation.objects.create(tenant=tenant, contact_phone="+5511999999999")
    with pytest.raises(IntegrityError):
        Conversation.objects.create(tenant=tenant, contact_phone="+5511999999999")


def test_campaign_contact_phone_is_unique_per_campaign(tenant):
    campaign = Campaign.objects.create(tenant=tenant, name="c")
    CampaignContact.objects.create(tenant=tenant, campaign=campaign, phone="+5511999999999")
    with pytest.raises(IntegrityError):
        CampaignContact.objects.create(tenant=tenant, campaign=campaign, phone="+5511999999999")
