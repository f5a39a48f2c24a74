"""A tenant's staff and its numbers in the admin, against the sandbox (Evolution and WAHA): create
a number on the operator's server (webhook set at once), pair it by QR, restart and log it out,
read its health, skip its warm-up (audited), clear its protection. Another tenant's number is a
404 on every page; the QR never reaches a log line."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from apps.billing.services.webhook_auth import waha_hmac_key, webhook_jwt_key
from apps.billing.tests.support.api import make_tenant
from apps.connections.models import NumberHealthSettings, WhatsAppInstance
from apps.tenancy.models import Membership

pytestmark = [pytest.mark.django_db, pytest.mark.each_provider]

PAGES = ["pairing", "pairing_state", "health"]
ACTIONS = ["restart", "logout", "skip_warm_up", "clear_protection"]


@pytest.fixture
def servers(settings, evolution_sandbox):
    settings.WHATSAPP_PROVIDER_SERVERS = json.dumps(
        [
            {
                "name": "evo",
                "provider": "evolution",
                "base_url": evolution_sandbox.base_url,
                "api_key": evolution_sandbox.api_key,
            },
            {
                "name": "waha",
                "provider": "waha",
                "base_url": evolution_sandbox.base_url,
                "api_key": evolution_sandbox.api_key,
            },
        ]
    )
    settings.BILLING_PUBLIC_BASE_URL = "https://billing.example.com"
    return settings


def staff(tenant, username: str) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="connections"))
    Membership.objects.create(user=user, tenant=tenant)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alpha():
    return make_tenant("pages-alpha")


@pytest.fixture
def alpha_staff(alpha) -> Client:
    return staff(alpha.tenant, "ana")


def url(name: str, *args) -> str:
    return reverse(f"admin:connections_whatsappinstance_{name}", args=args)


def create(client: Client, name: str, server: str):
    return client.post(url("new_number"), {"name": name, "server": server})


# ----------------------------------------------------------------------------- creating and pairing
def test_staff_create_a_number_its_webhook_is_set_and_it_pairs_by_qr(
    alpha, alpha_staff, servers, evolution_sandbox, provider, caplog
):
    caplog.set_level(logging.DEBUG)
    response = create(alpha_staff, "Vendas", "evo" if provider == "evolution" else "waha")

    instance = WhatsAppInstance.objects.get(tenant=alpha.tenant, name="Vendas")
    assert response.status_code == 302 and response["Location"] == url("pairing", instance.pk)
    assert (instance.provider, instance.instance_name, instance.base_url) == (
        provider,
        "pages-alpha-vendas",
        evolution_sandbox.base_url,
    )
    remote = evolution_sandbox.instance(instance.instance_name)
    if provider == "evolution":
        assert instance.api_key == remote["token"] != evolution_sandbox.api_key  # the instance token, not the server's
        assert remote["webhook"]["url"].endswith(f"/webhooks/evolution/{instance.webhook_secret}/")
        assert remote["webhook"]["headers"] == {"jwt_key": webhook_jwt_key(instance)}
    else:
        [hook] = remote["session_config"]["webhooks"]
        assert hook["url"] == f"https://billing.example.com/api/v1/billing/webhooks/waha/{instance.webhook_secret}/"
        assert hook["hmac"] == {"key": waha_hmac_key(instance)}
    assert LogEntry.objects.filter(object_id=str(instance.pk), action_flag=1).exists()

    page = alpha_staff.get(url("pairing", instance.pk))
    assert page.status_code == 200 and b"pairing-qr" in page.content and page["Cache-Control"].startswith("no-store")
    state = alpha_staff.get(url("pairing_state", instance.pk)).json()
    assert (state["state"], state["connected"]) == ("pairing", False)
    assert state["qr"].startswith("data:image/png;base64,")

    evolution_sandbox.scan(instance.instance_name)
    assert alpha_staff.get(url("pairing_state", instance.pk)).json()["connected"] is True
    instance.refresh_from_db()
    assert instance.health_state == "open" and instance.paired_at is not None
    assert "data:image" not in caplog.text and state["qr"][30:90] not in caplog.text


def test_a_refused_creation_saves_nothing_and_says_why(alpha, alpha_staff, servers, evolution_sandbox):
    evolution_sandbox.create_instance(name="pages-alpha-vendas")  # the provider name is taken

    response = create(alpha_staff, "Vendas", "evo")

    assert response.status_code == 200 and b"provider refused" in response.content
    assert not WhatsAppInstance.objects.filter(tenant=alpha.tenant, name="Vendas").exists()


def test_without_provider_servers_staff_cannot_create_numbers(alpha, alpha_staff, settings):
    settings.WHATSAPP_PROVIDER_SERVERS = ""
    assert alpha_staff.get(url("add")).status_code == 403
    assert alpha_staff.get(url("new_number")).status_code == 403


def test_restart_and_logout_reach_the_provider_and_a_logout_protects_the_number(
    alpha, alpha_staff, make_sandbox_whatsapp_instance, evolution_sandbox, provider
):
    instance = make_sandbox_whatsapp_instance(tenant=alpha.tenant, provider=provider)

    assert alpha_staff.post(url("restart", instance.pk)).status_code == 302
    assert evolution_sandbox.instance(instance.instance_name)["state"] == "open"
    assert alpha_staff.post(url("logout", instance.pk)).status_code == 302

    instance.refresh_from_db()
    assert evolution_sandbox.instance(instance.instance_name)["state"] in ("close", "qr")
    assert instance.is_protected and instance.protected_reason == "logged out (from the admin by ana)"
    assert instance.last_disconnect_at is not None


# ----------------------------------------------------------------------------- health
def test_the_health_page_shows_sends_against_the_cap_and_skipping_the_warm_up_is_audited(
    alpha, alpha_staff, make_sandbox_whatsapp_instance
):
    instance = make_sandbox_whatsapp_instance(tenant=alpha.tenant, warmed_up=False)

    page = alpha_staff.get(url("health", instance.pk)).content.decode()
    assert "0 / 20" in page and "day 0 since" in page and 'id="skip-warm-up"' in page

    refused = alpha_staff.post(url("skip_warm_up", instance.pk), {"reason": "  "}, follow=True)
    assert "Say why" in refused.content.decode()
    assert WhatsAppInstance.objects.get(pk=instance.pk).warmup_skipped_at is None

    alpha_staff.post(url("skip_warm_up", instance.pk), {"reason": "two years on the old bot"})
    instance.refresh_from_db()
    assert (instance.warmup_skipped_by.username, instance.warmup_skip_reason) == ("ana", "two years on the old bot")
    assert LogEntry.objects.filter(object_id=str(instance.pk), change_message__contains="Skipped the warm-up").exists()
    assert "0 / no cap" in alpha_staff.get(url("health", instance.pk)).content.decode()


def test_clearing_a_protection_from_the_health_page(alpha, alpha_staff, make_sandbox_whatsapp_instance):
    instance = make_sandbox_whatsapp_instance(tenant=alpha.tenant)
    WhatsAppInstance.objects.filter(pk=instance.pk).update(
        protected_reason="logged out (provider webhook)",
        protected_since=instance.created_at,
        attention_reason="x",
        attention_since=instance.created_at,
    )
    assert "logged out (provider webhook)" in alpha_staff.get(url("health", instance.pk)).content.decode()

    alpha_staff.post(url("clear_protection", instance.pk))

    instance.refresh_from_db()
    assert not instance.is_protected and instance.attention_since is None


# ----------------------------------------------------------------------------- isolation
def test_another_tenants_number_is_a_404_on_every_page_and_action(
    alpha, make_sandbox_whatsapp_instance, evolution_sandbox
):
    theirs = make_sandbox_whatsapp_instance(tenant=make_tenant("pages-beta").tenant)
    outsider = staff(alpha.tenant, "charlie")

    for name in PAGES:
        assert outsider.get(url(name, theirs.pk)).status_code == 404, name
    for name in ACTIONS:
        assert outsider.post(url(name, theirs.pk), {"reason": "x"}).status_code == 404, name
    assert outsider.get(url("pairing", "not-a-number")).status_code == 404
    assert evolution_sandbox.instance(theirs.instance_name)["state"] == "open"  # nothing reached the provider
    assert not WhatsAppInstance.objects.get(pk=theirs.pk).is_protected


def test_a_provider_that_does_not_answer_shows_the_error_state(alpha, alpha_staff, make_sandbox_whatsapp_instance):
    instance = make_sandbox_whatsapp_instance(tenant=alpha.tenant, state="qr")
    with socket.socket() as sock:  # a loopback port nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    WhatsAppInstance.objects.filter(pk=instance.pk).update(base_url=f"http://127.0.0.1:{port}")

    response = alpha_staff.get(url("pairing_state", instance.pk))

    body = response.json()
    assert response.status_code == 200 and (body["state"], body["connected"], body["qr"]) == ("error", False, None)
    assert "connection_refused" in body["reason"]


# ----------------------------------------------------------------------------- settings
def test_the_tenant_edits_its_warm_up_schedule_and_a_bad_one_is_refused(alpha):
    client = staff(alpha.tenant, "bia")
    add = reverse("admin:connections_numberhealthsettings_add")
    data = {
        "schedule": "0:10, 3:30",
        "warmup_uncapped_from_day": "20",
        "invalid_share_limit": "0.3",
        "invalid_window": "50",
        "block_burst_limit": "5",
        "block_window_minutes": "60",
    }

    bad = client.post(add, {**data, "schedule": "0:10, 30:30"})
    assert bad.status_code == 200 and "after the last step" in bad.content.decode()
    assert client.post(add, data).status_code == 302

    saved = NumberHealthSettings.objects.get(tenant=alpha.tenant)
    assert saved.warmup_schedule == [[0, 10], [3, 30]] and saved.schedule.cap_for_age(25) is None
    assert client.get(add).status_code == 403  # one row a tenant
