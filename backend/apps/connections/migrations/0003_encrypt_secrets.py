"""Provider API keys and webhook secrets encrypted at rest (Fernet, FIELD_ENCRYPTION_KEYS); the
webhook secret is found by its keyed hash from now on. Existing rows are encrypted here, in
raw SQL: the historical model would try to decrypt the clear values."""
from django.db import migrations, models

import apps.common.encrypted_fields
import apps.connections.models

TABLE = "connections_whatsappinstance"


def encrypt_rows(apps, schema_editor):
    from apps.common.encrypted_fields import encrypt
    from apps.connections.models import webhook_secret_hash

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT id, api_key, webhook_secret FROM {TABLE} FOR UPDATE")
        for pk, api_key, secret in cursor.fetchall():
            cursor.execute(
                f"UPDATE {TABLE} SET api_key = %s, webhook_secret = %s, webhook_secret_hash = %s WHERE id = %s",
                [encrypt(api_key) if api_key else api_key, encrypt(secret), webhook_secret_hash(secret), pk],
            )


def decrypt_rows(apps, schema_editor):
    from apps.common.encrypted_fields import decrypt

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT id, api_key, webhook_secret FROM {TABLE} FOR UPDATE")
        for pk, api_key, secret in cursor.fetchall():
            cursor.execute(f"UPDATE {TABLE} SET api_key = %s, webhook_secret = %s WHERE id = %s",
                           [decrypt(api_key) if api_key else api_key, decrypt(secret), pk])


class Migration(migrations.Migration):

    dependencies = [
        ("connections", "0002_instance_attention"),
    ]

    operations = [
        migrations.AlterField(
            model_name="whatsappinstance",
            name="api_key",
            field=apps.common.encrypted_fields.EncryptedTextField(),
        ),
        migrations.AlterField(
            model_name="whatsappinstance",
            name="webhook_secret",
            field=apps.common.encrypted_fields.EncryptedTextField(default=apps.connections.models.new_webhook_secret),
        ),
        migrations.AddField(
            model_name="whatsappinstance",
            name="webhook_secret_hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(encrypt_rows, decrypt_rows, elidable=False),
        migrations.AlterField(
            model_name="whatsappinstance",
            name="webhook_secret_hash",
            field=models.CharField(editable=False, max_length=64, unique=True),
        ),
    ]
