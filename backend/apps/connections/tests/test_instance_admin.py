"""Hostile and careless configuration of a WhatsApp instance, through the admin a person uses:
the provider URL passes the address guard and only superusers set it; an instance that queues
still send through cannot be deleted; the attention flag the worker raises is shown and cleared."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from apps.billing.constants import QueueStatus
from apps.billing.tests.support.api import make_tenant
from apps.billing.tests.support.builders import build_queue
from apps.connections.models import WhatsAppInstance
from apps.connections.services import clear_attention, flag_for_attention, open_queue_count
from apps.tenancy.models import Membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant_api():
    return make_tenant("conn-alpha")


@pytest.fixture
def staff_client(tenant_api, client):
    user = User.objects.create_user("staffer", password="pw-staffer-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="connections"))
    Membership.objects.create(user=user, tenant=tenant_api.tenant)
    client.force_login(user)
    return client


def change_url(instance: WhatsAppInstance) -> str:
    return reverse("admin:connections_whatsappinstance_change", args=[instance.pk])


def form_data(instance: WhatsAppInstance, **changes: str) -> dict[str, str]:
    data = {
        "tenant": str(instance.tenant_id),
        "name": instance.name,
        "provider": instance.provider,
        "api_version": instance.api_version,
        "base_url": instance.base_url,
        "api_key": "",
        "instance_name": instance.instance_name,
        "is_active": "on",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://169.254.169.254/latest", "cloud metadata address"),
        ("http://10.1.2.3:8080", "private address"),
        ("http://[::ffff:192.168.0.1]:8080", "private address"),
        ("ftp://evolution.example.com", "must be http or https"),
    ],
)
def test_a_provider_url_inside_our_network_is_refused_on_save(admin_client, tenant_api, url, problem):
    instance = tenant_api.instance

    response = admin_client.post(change_url(instance), form_data(instance, base_url=url))

    assert response.status_code == 200  # the form again, with the error
    assert problem in response.content.decode()
    instance.refresh_from_db()
    assert instance.base_url != url


def test_a_private_provider_host_in_the_operators_allow_list_is_accepted(admin_client, tenant_api, settings):
    settings.EVOLUTION_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    instance = tenant_api.instance

    response = admin_client.post(change_url(instance), form_data(instance, base_url="http://10.20.3.4:8080"))

    assert response.status_code == 302, response.content[:2000]
    instance.refresh_from_db()
    assert instance.base_url == "http://10.20.3.4:8080"


def test_tenant_staff_can_neither_change_the_provider_url_nor_add_instances(staff_client, tenant_api):
    instance = tenant_api.instance
    page = staff_client.get(change_url(instance))
    assert page.status_code == 200
    assert b'name="base_url"' not in page.content  # shown, not editable

    response = staff_client.post(
        change_url(instance), form_data(instance, base_url="https://93.184.215.14", name="renamed")
    )
    assert response.status_code == 302
    instance.refresh_from_db()
    assert (instance.name, instance.base_url) == ("renamed", "http://127.0.0.1:9")  # the rest is theirs
    assert staff_client.get(reverse("admin:connections_whatsappinstance_add")).status_code == 403


def test_an_instance_with_open_queues_cannot_be_deleted(admin_client, tenant_api):
    instance = tenant_api.instance
    queue = build_queue(tenant_api.tenant, instance=instance, status=QueueStatus.RUNNING, total=3)
    url = reverse("admin:connections_whatsappinstance_delete", args=[instance.pk])

    page = admin_client.get(url)
    assert "1 billing queue(s) not finished yet" in page.content.decode()
    refused = admin_client.post(url, {"post": "yes"})
    assert "not finished yet" in refused.content.decode()  # the confirmation never goes through
    bulk = admin_client.post(
        reverse("admin:connections_whatsappinstance_changelist"),
        {"action": "delete_selected", "_selected_action": [instance.pk], "post": "yes"},
    )
    assert "not finished yet" in bulk.content.decode()
    assert WhatsAppInstance.objects.filter(pk=instance.pk).exists()
    queue.refresh_from_db()
    assert queue.instance_id == instance.pk

    queue.status = QueueStatus.COMPLETED
    queue.save(update_fields=["status"])
    assert open_queue_count(instance=instance) == 0
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not WhatsAppInstance.objects.filter(pk=instance.pk).exists()


def test_the_attention_flag_is_shown_and_a_person_clears_it(admin_client, tenant_api):
    instance = tenant_api.instance
    assert flag_for_attention(instance_id=instance.pk, reason="provider_error: 500 to every send while open") is True
    assert flag_for_attention(instance_id=instance.pk, reason="provider_error: still failing") is False
    instance.refresh_from_db()
    first_flagged = instance.attention_since
    assert first_flagged is not None and instance.attention_reason == "provider_error: still failing"

    page = admin_client.get(change_url(instance)).content.decode()
    assert "provider_error: still failing" in page

    response = admin_client.post(
        reverse("admin:connections_whatsappinstance_changelist"),
        {"action": "clear_attention_flag", "_selected_action": [instance.pk]},
        follow=True,
    )
    assert "Attention flag cleared on 1 instance(s)." in response.content.decode()
    instance.refresh_from_db()
    assert (instance.attention_reason, instance.attention_since) == ("", None)
    assert clear_attention(instances=[instance]) == 0
