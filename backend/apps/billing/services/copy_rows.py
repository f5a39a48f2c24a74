"""`copy_insert`: many rows of one model through PostgreSQL COPY, in the caller's transaction.

Ingest wrote its contacts this way until it moved to one statement (`ingest_statement.py`);
other features that write many rows beside an ingest (charges' step runs) still use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models.fields.related import RelatedField
from django.db.models.options import Options

# Column types whose `get_db_prep_save` returns a value of the field's own Python type unchanged on
# PostgreSQL (str, int, date, Decimal, UUID): copy_insert skips that call for them, which is
# ~100,000 calls for 10,000 contacts. Anything else (JSON) is still prepared by its field.
_PASS_THROUGH_TYPES = frozenset(
    {
        "CharField",
        "TextField",
        "DateField",
        "DecimalField",
        "BooleanField",
        "UUIDField",
        "AutoField",
        "BigAutoField",
        "SmallAutoField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "PositiveSmallIntegerField",
    }
)


def copy_insert(
    model: type[models.Model],
    prototype: models.Model,
    fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    return_ids: bool = False,
) -> list[int]:
    """Insert `rows` (values of `fields`, in that order) with PostgreSQL COPY, in the caller's
    transaction; every other column gets `prototype`'s value (model defaults, auto_now stamps).
    Ingest itself now writes with one statement (`ingest_statement.py`); this stays the tool
    for other bulk rows written beside an ingest (charges' step runs).

    Why not `bulk_create`: for 10,000 contacts it spends ~2.5 s composing and binding INSERTs of
    thousands of parameters per batch, more than the whole 2 s ingest budget; COPY streams the
    same rows in about a quarter of that (bench/ingest_bench.py). Values still go through each
    field's `get_db_prep_save`, as bulk_create does, so the rows are identical. The primary key
    must be an auto field: the database numbers the rows, or, with `return_ids`, ids are drawn
    from its sequence first (COPY returns nothing) and written explicitly, in row order.
    """
    db = connections[DEFAULT_DB_ALIAS]  # not the `connection` proxy: each attribute read costs a lookup
    meta = model._meta
    pk = meta.auto_field
    if pk is None:
        raise ValueError(f"copy_insert needs an auto primary key; {meta.label} has none")
    varying = [_concrete_field(meta, name) for name in fields]
    varying_columns = {field.column for field in varying}
    fixed = [field for field in meta.concrete_fields if field is not pk and field.column not in varying_columns]
    columns = [column_name(f) for f in ([pk] if return_ids else []) + varying + fixed]
    constant = tuple(field.get_db_prep_save(field.pre_save(prototype, True), db) for field in fixed)
    prepare = [None if _passes_through(field) else field.get_db_prep_save for field in varying]
    quote = db.ops.quote_name
    ids: list[int] = []
    with db.cursor() as cursor:
        if return_ids:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [meta.db_table, pk.column, len(rows)],
            )
            ids = sorted(row[0] for row in cursor.fetchall())
        statement = f"COPY {quote(meta.db_table)} ({', '.join(quote(column) for column in columns)}) FROM STDIN"
        with cursor.cursor.copy(statement) as copy:  # the psycopg cursor under Django's wrapper
            for position, row in enumerate(rows):
                values = tuple(
                    value if prep is None else prep(value, db) for prep, value in zip(prepare, row, strict=True)
                )
                copy.write_row(((ids[position],) if return_ids else ()) + values + constant)
    return ids


def _concrete_field(meta: Options[Any], name: str) -> models.Field[Any, Any]:
    field = meta.get_field(name)
    if not isinstance(field, models.Field) or not field.concrete:
        raise ValueError(f"{meta.label}.{name} is not a column: copy_insert writes columns only")
    return field


def column_name(field: models.Field[Any, Any]) -> str:
    """The field's column (typed optional: a field without one is not concrete)."""
    if field.column is None:  # concrete fields always have one
        raise ValueError(f"{field} has no column")
    return field.column


def _passes_through(field: models.Field[Any, Any]) -> bool:
    """True when the field's database preparation is the identity (see _PASS_THROUGH_TYPES)."""
    target = field.target_field if isinstance(field, RelatedField) else field
    return target.get_internal_type() in _PASS_THROUGH_TYPES
