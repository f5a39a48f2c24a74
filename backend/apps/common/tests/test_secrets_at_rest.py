"""Secrets at rest: provider keys, webhook secrets and callback secrets are Fernet tokens in
the database, readable by the app, found by keyed hash where they are looked up by value,
rotated by a command, and never shown back in full by the admin."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse

from apps.billing.models import BillingConfig
from apps.billing.services.webhook_auth import WebhookAuthError, authenticate_webhook
from apps.billing.tests.support.builders import build_tenant
from apps.common import encrypted_fields
from apps.connections.models import WhatsAppInstance

PROVIDER_KEY = "provider-key-7f3a9c1e5b"


def raw(table: str, column: str, pk) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.fixture
def instance(db) -> WhatsAppInstance:
    return WhatsAppInstance.objects.create(
        tenant=build_tenant(), name="main", base_url="https://evo.example", api_key=PROVIDER_KEY, instance_name="main"
    )


@pytest.fixture
def rotated_keys(settings):
    """A new key first, the current one after it (the documented rotation order)."""
    current = list(settings.FIELD_ENCRYPTION_KEYS)
    new = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new, *current]
    yield new, current
    settings.FIELD_ENCRYPTION_KEYS = current


def test_the_database_holds_tokens_the_app_reads_back_in_clear(instance):
    config = BillingConfig.for_tenant(instance.tenant)
    stored = {
        "api_key": raw("connections_whatsappinstance", "api_key", instance.pk),
        "webhook_secret": raw("connections_whatsappinstance", "webhook_secret", instance.pk),
        "callback_secret": raw("billing_billingconfig", "callback_secret", config.pk),
    }
    for column, value in stored.items():
        assert value.startswith("gAAAA"), column  # a Fernet token
    assert PROVIDER_KEY not in stored["api_key"] and instance.webhook_secret not in stored["webhook_secret"]
    fresh = WhatsAppInstance.objects.get(pk=instance.pk)
    assert fresh.api_key == PROVIDER_KEY and fresh.webhook_secret == instance.webhook_secret
    assert BillingConfig.objects.get(pk=config.pk).callback_secret.startswith("whsec_")


def test_a_webhook_finds_its_instance_by_the_secrets_keyed_hash(instance):
    assert authenticate_webhook(token=instance.webhook_secret, authorization=None).pk == instance.pk
    with pytest.raises(WebhookAuthError):
        authenticate_webhook(token=instance.webhook_secret[:-1] + "x", authorization=None)
    instance.webhook_secret = "b" * 43
    instance.save(update_fields=["webhook_secret"])  # the hash follows the secret
    assert authenticate_webhook(token="b" * 43, authorization=None).pk == instance.pk


def test_rotation_re_encrypts_every_secret_with_the_new_key(instance, rotated_keys, settings):
    new, old = rotated_keys
    before = raw("connections_whatsappinstance", "api_key", instance.pk)
    out = io.StringIO()
    call_command("rotate_field_encryption", stdout=out)
    assert "connections.WhatsAppInstance: 1 row(s) re-encrypted" in out.getvalue()
    after = raw("connections_whatsappinstance", "api_key", instance.pk)
    assert after != before and Fernet(new.encode()).decrypt(after.encode()).decode() == PROVIDER_KEY
    settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key dropped: still readable
    assert WhatsAppInstance.objects.get(pk=instance.pk).api_key == PROVIDER_KEY


def test_a_secret_no_key_decrypts_fails_loudly(instance, settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(encrypted_fields.DecryptionError):
        WhatsAppInstance.objects.get(pk=instance.pk)
    with pytest.raises(CommandError, match="does not decrypt"):
        call_command("rotate_field_encryption", stdout=io.StringIO())


def test_the_admin_shows_hints_never_the_secrets(instance, superuser_client):
    page = superuser_client.get(reverse("admin:connections_whatsappinstance_change", args=[instance.pk]))
    html = page.content.decode()
    assert PROVIDER_KEY not in html and instance.webhook_secret not in html
    assert "prov…5b" in html
    config = BillingConfig.for_tenant(instance.tenant)
    html = superuser_client.get(reverse("admin:billing_billingconfig_change", args=[config.pk])).content.decode()
    assert config.callback_secret not in html and config.callback_secret[:4] + "…" in html


def test_regenerating_the_callback_secret_shows_the_new_one_once(instance, superuser_client):
    config = BillingConfig.for_tenant(instance.tenant)
    response = superuser_client.post(
        reverse("admin:billing_billingconfig_changelist"),
        {"action": "regenerate_callback_secret", "_selected_action": [config.pk]},
    )
    config.refresh_from_db()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert config.callback_secret in response.content.decode()
    assert not list(response.wsgi_request._messages)  # not in a (cookie-stored) message


@pytest.mark.django_db(transaction=True)
def test_the_migrations_encrypt_rows_written_in_clear_before_them():
    from django.db.migrations.executor import MigrationExecutor

    tenant = build_tenant()
    executor = MigrationExecutor(connection)
    executor.migrate([("connections", "0002_instance_attention")])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO connections_whatsappinstance (tenant_id, name, provider, api_version, base_url, api_key,"
                " instance_name, webhook_secret, is_active, health_state, health_reason, attention_reason,"
                " created_at, updated_at) VALUES (%s, 'old', 'evolution', 'v2', 'https://evo.example', %s, 'old',"
                " 'legacy-secret-0123456789', true, 'unknown', '', '', now(), now()) RETURNING id",
                [tenant.pk, PROVIDER_KEY],
            )
            instance_id = cursor.fetchone()[0]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert raw("connections_whatsappinstance", "api_key", instance_id).startswith("gAAAA")
    instance = WhatsAppInstance.objects.get(pk=instance_id)
    assert (instance.api_key, instance.webhook_secret) == (PROVIDER_KEY, "legacy-secret-0123456789")
    assert authenticate_webhook(token="legacy-secret-0123456789", authorization=None).pk == instance_id


def test_the_deploy_check_asks_for_both_keys(settings):
    from apps.common.checks import data_protection_keys

    settings.FIELD_ENCRYPTION_KEYS, settings.PERSONAL_DATA_HASH_KEY = [], ""
    assert {w.id for w in data_protection_keys(None)} == {"common.W001", "common.W002"}
    settings.FIELD_ENCRYPTION_KEYS, settings.PERSONAL_DATA_HASH_KEY = [Fernet.generate_key().decode()], "k" * 40
    assert data_protection_keys(None) == []
