"""Re-encrypt every stored secret with the newest key of FIELD_ENCRYPTION_KEYS.

Rotation: put the new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after it), deploy,
run this command, then remove the old keys. Each table is done in batches, each batch in its
own short transaction with its rows locked, so the app keeps reading and writing meanwhile;
a row that no configured key decrypts stops the command (nothing is guessed or skipped).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from apps.common.encrypted_fields import DecryptionError, EncryptedTextField, rotate

BATCH = 500


class Command(BaseCommand):
    help = "Re-encrypt stored secrets (EncryptedTextField columns) with the newest FIELD_ENCRYPTION_KEYS key."

    def handle(self, *args: Any, **options: Any) -> None:
        for model in apps.get_models():
            columns = [f.column for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField) and f.column]
            pk_column = model._meta.pk.column
            if not columns or model._meta.proxy or pk_column is None:
                continue
            try:
                count = self._rotate_table(model._meta.db_table, pk_column, columns)
            except DecryptionError as exc:
                raise CommandError(f"{model._meta.label}: {exc}") from exc
            self.stdout.write(f"{model._meta.label}: {count} row(s) re-encrypted ({', '.join(columns)})")

    @staticmethod
    def _rotate_table(table: str, pk: str, columns: list[str]) -> int:
        quote = connection.ops.quote_name
        selected = ", ".join(quote(c) for c in columns)
        assignments = ", ".join(f"{quote(c)} = %s" for c in columns)
        done, last = 0, None
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                after = "" if last is None else f"WHERE {quote(pk)} > %s"
                cursor.execute(
                    f"SELECT {quote(pk)}, {selected} FROM {quote(table)} {after} "
                    f"ORDER BY {quote(pk)} LIMIT {BATCH} FOR UPDATE",
                    [] if last is None else [last],
                )
                rows = cursor.fetchall()
                for row_pk, *values in rows:
                    rotated = [rotate(value) if value else value for value in values]
                    cursor.execute(
                        f"UPDATE {quote(table)} SET {assignments} WHERE {quote(pk)} = %s", [*rotated, row_pk]
                    )
            if not rows:
                return done
            done += len(rows)
            last = rows[-1][0]
