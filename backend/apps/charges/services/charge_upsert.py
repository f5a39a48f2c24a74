"""Upsert up to 10,000 charges by `external_id` in one request (API and spreadsheet import).

Each charge is validated in plain Python (charge_validation); a bad one is reported by index
and the rest are stored, unless `strict`. The database sees a constant number of statements:
the rows are streamed with COPY into a temporary table, the existing charges among them are
read and locked in one SELECT, and one `INSERT … ON CONFLICT (tenant, external_id) DO UPDATE`
writes new and changed rows (an unchanged row is not rewritten). A changed amount or due date
updates the charge and its future steps (charge_changes). Status is never changed here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from apps.billing.templating.date_calculator import today_in
from apps.charges.constants import MAX_CHARGES_PER_REQUEST, ChangeSource, ChargeStatus
from apps.charges.models import Cadence, Charge
from apps.charges.services.charge_changes import AmountOrDueChange, record_changes
from apps.charges.services.charge_validation import ChargeRejection, ChargeValidator, ValidCharge
from apps.common.exceptions import ApplicationError
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)

# Columns the client sets, in COPY order (cadence_id is resolved from the cadence's name).
CLIENT_COLUMNS = (
    "external_id",
    "phone",
    "name",
    "document",
    "debtor_external_id",
    "debtor_key",
    "amount",
    "due_date",
    "description",
    "payment_link",
    "pix_code",
    "boleto_line",
    "variables",
    "cadence_id",
    "asaas_payment_id",
)
_TYPES = (
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "numeric(14,2)",
    "date",
    "text",
    "text",
    "text",
    "text",
    "jsonb",
    "bigint",
    "text",
)
# Overwritten on conflict; an empty asaas_payment_id keeps the one learnt from Asaas.
_UPDATED = [c for c in CLIENT_COLUMNS if c not in ("external_id", "asaas_payment_id")]


@dataclass
class UpsertResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[ChargeRejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": [r.as_dict() for r in self.rejected],
        }


def upsert_charges(
    *, tenant: Tenant, charges: list[Any], strict: bool = False, source: str = ChangeSource.API
) -> UpsertResult:
    if len(charges) > MAX_CHARGES_PER_REQUEST:
        raise ApplicationError(
            "too_many_charges",
            f"At most {MAX_CHARGES_PER_REQUEST} charges per request; got {len(charges)}.",
            status=413,
            details={"max_charges": MAX_CHARGES_PER_REQUEST},
        )
    kept, rejected, cadences = validate_charges(tenant=tenant, charges=charges)
    if strict and rejected:
        raise ApplicationError(
            "charges_rejected",
            "strict mode: the request has invalid charges; nothing was stored.",
            status=422,
            details={"rejected": [r.as_dict() for r in rejected]},
        )
    if not kept:
        raise ApplicationError(
            "no_valid_charges",
            "None of the charges can be stored; see details.",
            status=422,
            details={"rejected": [r.as_dict() for r in rejected]},
        )
    with transaction.atomic():
        result = _write(tenant, kept, cadences, source)
    result.rejected = rejected
    logger.info(
        "charges upserted",
        extra={
            "tenant_id": str(tenant.pk),
            "charges_created": result.created,
            "charges_updated": result.updated,
            "charges_unchanged": result.unchanged,
            "rejected": len(rejected),
            "source": source,
        },
    )
    return result


def validate_charges(
    *, tenant: Tenant, charges: list[Any]
) -> tuple[list[ValidCharge], list[ChargeRejection], dict[str, int]]:
    """Check every charge without writing (the upsert, and the import's preview): the valid
    ones, the refusals sorted by index, and the named cadences' ids."""
    accepted, rejected = _validate_each(tenant, charges)
    cadences = _cadence_ids(tenant, accepted)
    kept = []
    for charge in accepted:
        if charge.cadence and charge.cadence not in cadences:
            rejected.append(
                ChargeRejection(
                    charge.index, charge.external_id, "", "unknown_cadence", f"No cadence named {charge.cadence!r}."
                )
            )
        else:
            kept.append(charge)
    rejected.sort(key=lambda r: r.index)
    return kept, rejected, cadences


def _validate_each(tenant: Tenant, charges: list[Any]) -> tuple[list[ValidCharge], list[ChargeRejection]]:
    validator = ChargeValidator(today=today_in(tenant.timezone))
    accepted: list[ValidCharge] = []
    rejected: list[ChargeRejection] = []
    seen: set[str] = set()
    for index, raw in enumerate(charges):
        result = validator.validate(index, raw)
        if isinstance(result, ChargeRejection):
            rejected.append(result)
        elif result.external_id in seen:
            rejected.append(
                ChargeRejection(
                    index,
                    result.external_id,
                    "",
                    "duplicate_external_id",
                    "This external_id appears earlier in the request.",
                )
            )
        else:
            seen.add(result.external_id)
            accepted.append(result)
    return accepted, rejected


def _cadence_ids(tenant: Tenant, charges: list[ValidCharge]) -> dict[str, int]:
    names = {charge.cadence for charge in charges if charge.cadence}
    if not names:
        return {}
    return dict(Cadence.objects.filter(tenant=tenant, name__in=names).values_list("name", "pk"))


def _write(tenant: Tenant, charges: list[ValidCharge], cadences: dict[str, int], source: str) -> UpsertResult:
    table = Charge._meta.db_table
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's, for COPY
        columns = ", ".join(f"{name} {kind}" for name, kind in zip(CLIENT_COLUMNS, _TYPES, strict=True))
        cursor.execute(f"CREATE TEMPORARY TABLE charge_upsert ({columns})")
        with cursor.copy(f"COPY charge_upsert ({', '.join(CLIENT_COLUMNS)}) FROM STDIN") as copy:
            for c in charges:
                copy.write_row(
                    (
                        c.external_id,
                        c.phone,
                        c.name,
                        c.document,
                        c.debtor_external_id,
                        c.debtor_key,
                        c.amount,
                        c.due_date,
                        c.description,
                        c.payment_link,
                        c.pix_code,
                        c.boleto_line,
                        Jsonb(c.variables),
                        cadences.get(c.cadence),
                        c.asaas_payment_id,
                    )
                )
        cursor.execute("ANALYZE charge_upsert")  # so the join below probes the unique index
        cursor.execute(
            f"SELECT c.id, c.amount, c.due_date FROM {table} c JOIN charge_upsert u ON u.external_id = c.external_id"
            f" WHERE c.tenant_id = %s FOR UPDATE OF c",
            [tenant.pk],
        )
        before = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
        assignments = ", ".join(f"{name} = EXCLUDED.{name}" for name in _UPDATED)
        current = ", ".join(f"{table}.{name}" for name in _UPDATED)
        incoming = ", ".join(f"EXCLUDED.{name}" for name in _UPDATED)
        cursor.execute(
            f"""INSERT INTO {table} (tenant_id, status, payment_source, payment_reference, created_at, updated_at,
                                    {", ".join(CLIENT_COLUMNS)})
                SELECT %s, %s, '', '', now(), now(), {", ".join(CLIENT_COLUMNS)} FROM charge_upsert
                ON CONFLICT (tenant_id, external_id) DO UPDATE SET {assignments},
                    asaas_payment_id = COALESCE(NULLIF(EXCLUDED.asaas_payment_id, ''), {table}.asaas_payment_id),
                    updated_at = now()
                WHERE ({current}) IS DISTINCT FROM ({incoming})
                   OR (EXCLUDED.asaas_payment_id <> '' AND EXCLUDED.asaas_payment_id <> {table}.asaas_payment_id)
                RETURNING id, xmax = 0, amount, due_date""",
            [tenant.pk, ChargeStatus.OPEN],
        )
        written = cursor.fetchall()
        cursor.execute("DROP TABLE charge_upsert")  # a failure rolls its creation back instead
    result = UpsertResult()
    changes = []
    for pk, inserted, amount, due_date in written:
        if inserted:
            result.created += 1
            continue
        result.updated += 1
        old_amount, old_due = before[pk]
        if old_amount != amount or old_due != due_date:
            changes.append(AmountOrDueChange(pk, old_amount, amount, old_due, due_date))
    result.unchanged = len(charges) - result.created - result.updated
    record_changes(tenant=tenant, changes=changes, source=source, occurred_at=timezone.now())
    return result
