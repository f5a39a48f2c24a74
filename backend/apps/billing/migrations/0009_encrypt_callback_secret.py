"""The callback signing secret encrypted at rest (Fernet, FIELD_ENCRYPTION_KEYS). Existing rows
are encrypted in raw SQL: the historical model would try to decrypt the clear values."""
from django.db import migrations

import apps.billing.models.billing_config
import apps.common.encrypted_fields

TABLE = "billing_billingconfig"


def encrypt_rows(apps, schema_editor):
    from apps.common.encrypted_fields import encrypt

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT id, callback_secret FROM {TABLE} WHERE callback_secret <> '' FOR UPDATE")
        for pk, secret in cursor.fetchall():
            cursor.execute(f"UPDATE {TABLE} SET callback_secret = %s WHERE id = %s", [encrypt(secret), pk])


def decrypt_rows(apps, schema_editor):
    from apps.common.encrypted_fields import decrypt

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT id, callback_secret FROM {TABLE} WHERE callback_secret <> '' FOR UPDATE")
        for pk, token in cursor.fetchall():
            cursor.execute(f"UPDATE {TABLE} SET callback_secret = %s WHERE id = %s", [decrypt(token), pk])


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0008_contact_list_keyset_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="billingconfig",
            name="callback_secret",
            field=apps.common.encrypted_fields.EncryptedTextField(
                default=apps.billing.models.billing_config.new_callback_secret),
        ),
        migrations.RunPython(encrypt_rows, decrypt_rows, elidable=False),
    ]
