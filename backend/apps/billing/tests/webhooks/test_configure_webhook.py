"""`manage.py configure_evolution_webhook` against the sandbox (the real HTTP path)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.billing.services.webhook_auth import webhook_jwt_key
from apps.billing.tests.support.api import make_tenant
from apps.connections.models import WhatsAppInstance

BASE = "https://billing.example.com"


def run(*args: str) -> str:
    out = StringIO()
    call_command("configure_evolution_webhook", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def sandboxed(make_sandbox_whatsapp_instance):
    def make(api_version: str = "v2") -> tuple:
        api = make_tenant(f"cfg-{api_version}")
        instance = make_sandbox_whatsapp_instance(tenant=api.tenant, api_version=api_version)
        return api, instance

    return make


def test_it_sets_url_events_and_jwt_on_a_v2_instance(sandboxed, evolution_sandbox):
    api, instance = sandboxed()
    output = run("--tenant", api.tenant.slug, "--instance", instance.name, "--base-url", BASE)
    webhook = evolution_sandbox.instance(instance.instance_name)["webhook"]
    assert webhook["enabled"] is True and webhook["byEvents"] is False
    assert webhook["url"] == f"{BASE}/api/v1/billing/webhooks/evolution/{instance.webhook_secret}/"
    assert sorted(webhook["events"]) == [
        "CONNECTION_UPDATE",
        "LOGOUT_INSTANCE",
        "MESSAGES_UPDATE",
        "MESSAGES_UPSERT",
        "SEND_MESSAGE",
    ]
    assert webhook["headers"] == {"jwt_key": webhook_jwt_key(instance)}
    request = evolution_sandbox.requests(instance=instance.instance_name, path="/webhook/set/")[-1]
    assert request["auth"] in ("instance", "global")  # sent with the apikey header
    assert instance.webhook_secret not in output and "signed on" in output


def test_a_v1_instance_gets_the_flat_body_without_headers(sandboxed, evolution_sandbox):
    api, instance = sandboxed("v1")
    output = run("--tenant", api.tenant.slug, "--instance", instance.name, "--base-url", BASE, "--no-jwt")
    webhook = evolution_sandbox.instance(instance.instance_name)["webhook"]
    assert webhook["url"].endswith(f"/{instance.webhook_secret}/") and webhook["headers"] == {}
    assert "signed off" in output


def test_a_provider_refusal_is_a_command_error(sandboxed, evolution_sandbox):
    api, instance = sandboxed()
    WhatsAppInstance.objects.filter(pk=instance.pk).update(instance_name="missing-on-provider")
    with pytest.raises(CommandError, match="could not be configured"):
        run("--tenant", api.tenant.slug, "--instance", instance.name, "--base-url", BASE)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--all"], "base-url"),
        (["--base-url", BASE], "--instance"),
        (["--base-url", BASE, "--tenant", "nobody", "--all"], "No active instance"),
    ],
)
def test_bad_arguments_are_refused(db, settings, args, message):
    settings.BILLING_PUBLIC_BASE_URL = ""
    with pytest.raises(CommandError, match=message):
        run(*args)
