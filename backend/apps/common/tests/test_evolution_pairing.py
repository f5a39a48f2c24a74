"""EvolutionAPIService's pairing and set-up calls against the sandbox: `/instance/create`,
`/instance/connect` (the QR), `/instance/restart`, `/instance/logout`."""

from __future__ import annotations

import pytest

from apps.common.services.provider import client_for
from apps.common.services.provider_errors import ProviderAuthError, ProviderLookupError
from apps.connections.models import WhatsAppInstance

pytestmark = pytest.mark.django_db


def test_create_remote_uses_the_global_key_sets_the_webhook_and_returns_the_instance_token(evolution_sandbox):
    instance = WhatsAppInstance(
        name="new", base_url=evolution_sandbox.base_url, api_key=evolution_sandbox.api_key, instance_name="fresh"
    )

    token = client_for(instance).create_remote(webhook_url="https://billing.example.com/hook/x/", signing_key="j" * 64)

    created = evolution_sandbox.instance("fresh")
    assert token == created["token"] and token != evolution_sandbox.api_key
    assert created["state"] == "qr" and created["qr_count"] == 1
    assert created["webhook"]["url"] == "https://billing.example.com/hook/x/"
    assert created["webhook"]["headers"] == {"jwt_key": "j" * 64} and "LOGOUT_INSTANCE" in created["webhook"]["events"]


def test_create_remote_refuses_a_name_in_use_and_an_instance_token(evolution_sandbox, sandbox_whatsapp_instance):
    taken = WhatsAppInstance(
        name="x",
        base_url=evolution_sandbox.base_url,
        api_key=evolution_sandbox.api_key,
        instance_name=sandbox_whatsapp_instance.instance_name,
    )
    with pytest.raises(ProviderAuthError):  # 403: the name is in use
        client_for(taken).create_remote(webhook_url=None, signing_key="")
    with pytest.raises(ProviderAuthError):  # an instance token cannot create instances
        client_for(
            WhatsAppInstance(
                name="y",
                base_url=evolution_sandbox.base_url,
                api_key=sandbox_whatsapp_instance.api_key,
                instance_name="other",
            )
        ).create_remote(webhook_url=None, signing_key="")


def test_pairing_shows_the_qr_until_the_scan_then_connected(evolution_sandbox, make_sandbox_whatsapp_instance):
    instance = make_sandbox_whatsapp_instance(state="close")

    first = client_for(instance).pairing_state()
    assert (first.state, first.connected) == ("pairing", False)
    assert first.qr_data_url.startswith("data:image/png;base64,")
    assert client_for(instance).pairing_state().qr_data_url == first.qr_data_url  # the same QR while it shows

    evolution_sandbox.scan(instance.instance_name)
    assert client_for(instance).pairing_state().connected is True


def test_logout_closes_the_instance_and_a_second_logout_is_refused(evolution_sandbox, sandbox_whatsapp_instance):
    client_for(sandbox_whatsapp_instance).logout()

    assert evolution_sandbox.instance(sandbox_whatsapp_instance.instance_name)["state"] == "close"
    with pytest.raises(ProviderLookupError):  # 400: not connected
        client_for(sandbox_whatsapp_instance).logout()


def test_restart_of_an_open_instance_keeps_it_open(evolution_sandbox, sandbox_whatsapp_instance):
    client_for(sandbox_whatsapp_instance).restart()

    assert evolution_sandbox.instance(sandbox_whatsapp_instance.instance_name)["state"] == "open"
