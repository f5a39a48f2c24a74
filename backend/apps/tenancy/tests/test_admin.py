"""The admin is usable by a person: every page renders, and tenant staff see only their rows."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from apps.connections.models import WhatsAppInstance
from apps.tenancy.models import Membership, Tenant

pytestmark = pytest.mark.django_db

HOST_APPS = {"tenancy", "chat", "campaigns", "connections"}


@pytest.fixture
def tenants():
    a = Tenant.objects.create(name="Alpha Clinic", slug="alpha")
    b = Tenant.objects.create(name="Beta Clinic", slug="beta")
    for tenant in (a, b):
        WhatsAppInstance.objects.create(
            tenant=tenant,
            name=f"{tenant.slug}-main",
            base_url="http://127.0.0.1:8081",
            api_key=f"secret-key-of-{tenant.slug}",
            instance_name=tenant.slug,
        )
    return a, b


@pytest.fixture
def staff_of_alpha(tenants, client):
    user = User.objects.create_user("alice", password="pw-alice-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=HOST_APPS))
    Membership.objects.create(user=user, tenant=tenants[0])
    client.force_login(user)
    return client


def test_every_host_admin_page_renders_for_a_superuser(admin_client, tenants):
    for model, _ in admin.site._registry.items():
        if model._meta.app_label not in HOST_APPS:
            continue
        opts = model._meta
        assert admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code in (200, 403)


def test_instance_api_key_is_never_rendered(admin_client, tenants):
    instance = WhatsAppInstance.objects.get(tenant=tenants[0])
    page = admin_client.get(reverse("admin:connections_whatsappinstance_change", args=[instance.pk]))
    assert page.status_code == 200
    assert b"secret-key-of-alpha" not in page.content
    listing = admin_client.get(reverse("admin:connections_whatsappinstance_changelist"))
    assert b"secret-key-of" not in listing.content


def test_tenant_staff_sees_only_their_tenant(staff_of_alpha, tenants):
    listing = staff_of_alpha.get(reverse("admin:connections_whatsappinstance_changelist"))
    assert listing.status_code == 200
    assert b"alpha-main" in listing.content
    assert b"beta-main" not in listing.content
    beta_instance = WhatsAppInstance.objects.get(tenant=tenants[1])
    page = staff_of_alpha.get(reverse("admin:connections_whatsappinstance_change", args=[beta_instance.pk]))
    assert page.status_code == 302  # "does not exist" redirect, nothing shown
    tenant_list = staff_of_alpha.get(reverse("admin:tenancy_tenant_changelist"))
    assert b"Alpha Clinic" in tenant_list.content and b"Beta Clinic" not in tenant_list.content


def test_tenant_staff_cannot_add_instances_the_provider_url_is_the_operators(staff_of_alpha, admin_client, tenants):
    form = {
        "name": "second",
        "provider": "evolution",
        "api_version": "v2",
        "base_url": "http://127.0.0.1:8081",
        "api_key": "new-key",
        "instance_name": "second",
        "is_active": "on",
    }
    assert staff_of_alpha.post(reverse("admin:connections_whatsappinstance_add"), form).status_code == 403
    response = admin_client.post(reverse("admin:connections_whatsappinstance_add"), {**form, "tenant": tenants[0].pk})
    assert response.status_code == 302, response.content[:2000]
    assert WhatsAppInstance.objects.get(name="second").tenant == tenants[0]


def test_staff_without_tenant_sees_nothing(client, tenants):
    user = User.objects.create_user("nobody", password="pw-nobody-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=HOST_APPS))
    client.force_login(user)
    assert client.get(reverse("admin:connections_whatsappinstance_changelist")).status_code == 403
