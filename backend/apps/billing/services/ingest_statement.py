"""The one SQL statement that writes an accepted send request.

Campaign, BillingCampaign, BillingQueue, one CampaignContact and one BillingContact per
contact, the round-robin slots of a sequential template and the variations' `used_count`: one
statement with data-modifying CTEs, so one round trip and one implicit transaction (a statement
is atomic) whatever the number of contacts — the contacts travel as one JSON array (orjson)
expanded by `json_to_recordset`, each getting its CampaignContact id from the sequence on the way. It also holds the two checks that used to cost statements of their own:

- idempotency: the BillingCampaign insert is `ON CONFLICT (tenant, type, external_id) DO
  NOTHING`, and every other insert reads its RETURNING, so a repeat writes nothing. A
  concurrent repeat waits on the unique index for the first to commit (no advisory lock);
- opt-out: if any phone is on the tenant's suppression list, nothing is written and the
  statement answers those phones (the caller drops them and runs it again). A phone whose
  data was erased is on the list only as its keyed hash: the request's phones travel with
  their hashes (`phone_hashes`) to match those rows too.

It runs as a server-side prepared statement (`apps.common.prepared_sql`): its text is fixed
(built once per process from the models' columns), so PostgreSQL plans it once per connection.
Columns the request does not set get their model defaults, prepared by each field as the ORM
would; the timestamps get the request's `now`.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection, models
from psycopg import sql
from psycopg.types.json import Jsonb

from apps.billing.models import (
    BillingCampaign,
    BillingContact,
    BillingQueue,
    BillingTemplate,
    BillingTemplateVariation,
    SuppressedPhone,
)
from apps.billing.services.copy_rows import column_name
from apps.campaigns.models import Campaign, CampaignContact
from apps.common import prepared_sql
from apps.common.keyed_hash import phone_hash

UNIQUE_EXTERNAL_ID = "billing_campaign_unique_external_id"
_STATIC_CALLABLE_DEFAULTS = (dict, list)  # fresh objects per call, equal every time: one literal


@dataclass(frozen=True)
class IngestRows:
    """What the statement writes, already validated and normalised."""

    tenant_id: uuid.UUID
    template_id: uuid.UUID
    template_type: str
    instance_id: int
    api_key_id: uuid.UUID | None
    campaign_id: uuid.UUID
    billing_campaign_id: uuid.UUID
    queue_id: uuid.UUID
    campaign_name: str
    external_id: str
    fingerprint: str
    response_snapshot: dict[str, Any]
    callback_url: str
    metadata: dict[str, Any]
    priority: int
    scheduled_for: datetime | None
    now: datetime
    publish_now: bool  # stamped published: the caller wakes a consumer right after the commit
    phones: Sequence[str]
    names: Sequence[str]
    contact_external_ids: Sequence[str]
    due_dates: Sequence[date | None]
    amounts: Sequence[Decimal | None]
    variables: Sequence[dict[str, Any]]
    # One variation id per contact (random, weighted), or None with `rotation` for a sequential
    # template: the slots are reserved in the statement, in the template's rotation order.
    variation_ids: Sequence[int] | None
    rotation: Sequence[int]


@dataclass(frozen=True)
class IngestOutcome:
    billing_campaign_id: uuid.UUID | None  # None: nothing written (a repeat, or suppressed phones)
    suppressed_phones: frozenset[str]


def write_request(rows: IngestRows) -> IngestOutcome:
    sequential = rows.variation_ids is None
    params = {
        "tenant": rows.tenant_id,
        "template": rows.template_id,
        "template_type": rows.template_type,
        "instance": rows.instance_id,
        "api_key": rows.api_key_id,
        "campaign": rows.campaign_id,
        "billing_campaign": rows.billing_campaign_id,
        "queue": rows.queue_id,
        "campaign_name": rows.campaign_name,
        "external_id": rows.external_id,
        "fingerprint": rows.fingerprint,
        "snapshot": Jsonb(rows.response_snapshot, dumps=_dumps),
        "callback_url": rows.callback_url,
        "metadata": Jsonb(rows.metadata, dumps=_dumps),
        "priority": rows.priority,
        "scheduled_for": rows.scheduled_for,
        "now": rows.now,
        "count": len(rows.phones),
        "published_at": rows.now if rows.publish_now else None,
        "publish_count": 1 if rows.publish_now else 0,
        "sequential": sequential,
        "rotation": list(rows.rotation),
        "phones": _dumps(rows.phones),
        "phone_hashes": _dumps([phone_hash(phone) for phone in rows.phones]),
        "contacts": _contacts_json(rows),
    }
    result = prepared_sql.run(statement(), params)
    billing_campaign_id, suppressed = result.rows[0]
    return IngestOutcome(billing_campaign_id, frozenset(suppressed))


def _dumps(value: Any) -> str:
    """orjson, or the standard library for what orjson refuses (an integer beyond 64 bits, which
    the API's parser accepts through its `json` fallback)."""
    try:
        return orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(value, ensure_ascii=False, default=str)  # str: the contacts' dates


def _contacts_json(rows: IngestRows) -> str:
    """The contacts as one JSON array for `json_to_recordset`: orjson writes 10,000 of them in a
    few milliseconds, where binding seven arrays element by element took a third of a second."""
    variation_ids: Sequence[int | None] = rows.variation_ids or [None] * len(rows.phones)
    return _dumps(
        [
            {
                "phone": phone,
                "name": name,
                "external_id": external_id,
                "due_date": due_date,
                "amount": None if amount is None else str(amount),
                "variables": variables,
                "variation_id": variation_id,
            }
            for phone, name, external_id, due_date, amount, variables, variation_id in zip(
                rows.phones,
                rows.names,
                rows.contact_external_ids,
                rows.due_dates,
                rows.amounts,
                rows.variables,
                variation_ids,
                strict=True,
            )
        ]
    )


# ----------------------------------------------------------------------------- the statement
@functools.cache
def statement() -> str:
    q = connection.ops.quote_name
    campaign = _insert(
        Campaign,
        {
            "id": "%(campaign)s",
            "tenant": "%(tenant)s",
            "name": "%(campaign_name)s",
            "source": "'billing'",
            "total_contacts": "%(count)s",
        },
        source="bc",
    )
    billing_campaign = _insert(
        BillingCampaign,
        {
            "id": "%(billing_campaign)s",
            "tenant": "%(tenant)s",
            "campaign": "%(campaign)s",
            "template": "%(template)s",
            "template_type": "%(template_type)s",
            "external_id": "%(external_id)s",
            "request_fingerprint": "%(fingerprint)s",
            "response_snapshot": "%(snapshot)s",
            "callback_url": "%(callback_url)s",
            "metadata": "%(metadata)s",
            "created_by_key": "%(api_key)s",
            "instance": "%(instance)s",
        },
        source=None,
    )
    queue = _insert(
        BillingQueue,
        {
            "id": "%(queue)s",
            "tenant": "%(tenant)s",
            "billing_campaign": "%(billing_campaign)s",
            "template_type": "%(template_type)s",
            "instance": "%(instance)s",
            "priority": "%(priority)s",
            "scheduled_for": "%(scheduled_for)s",
            "total_contacts": "%(count)s",
            "last_published_at": "%(published_at)s",
            "publish_count": "%(publish_count)s",
        },
        source="bc",
    )
    campaign_contact = _insert(
        CampaignContact,
        {
            "id": "s.campaign_contact_id",
            "tenant": "%(tenant)s",
            "campaign": "%(campaign)s",
            "phone": "s.phone",
            "name": "s.name",
        },
        source="src s",
    )
    contact = _insert(
        BillingContact,
        {
            "tenant": "%(tenant)s",
            "billing_campaign": "%(billing_campaign)s",
            "queue": "%(queue)s",
            "campaign_contact": "s.campaign_contact_id",
            "phone": "s.phone",
            "name": "s.name",
            "external_id": "s.external_id",
            "due_date": "s.due_date",
            "amount": "s.amount",
            "variables": "s.variables",
            "variation": "COALESCE(s.variation_id, (%(rotation)s::bigint[])"
            "[(slot.start + s.position - 1) %% cardinality(%(rotation)s::bigint[]) + 1])",
        },
        source="src s LEFT JOIN slot ON true",
        auto_pk=True,
    )
    suppressed = q(SuppressedPhone._meta.db_table)
    sequence = _sequence_literal(CampaignContact)
    template = q(BillingTemplate._meta.db_table)
    variation = q(BillingTemplateVariation._meta.db_table)
    return f"""
WITH suppressed AS (
  SELECT phone FROM {suppressed}
   WHERE tenant_id = %(tenant)s::uuid AND phone IN (SELECT value FROM json_array_elements_text(%(phones)s::json))
  UNION
  SELECT p.phone FROM ROWS FROM (json_array_elements_text(%(phones)s::json),
                                 json_array_elements_text(%(phone_hashes)s::json)) AS p(phone, phone_hash)
   WHERE p.phone_hash IN (SELECT phone_hash FROM {suppressed}
                           WHERE tenant_id = %(tenant)s::uuid AND phone_hash IS NOT NULL)
), bc AS (
  {billing_campaign} WHERE NOT EXISTS (SELECT 1 FROM suppressed)
  ON CONFLICT ON CONSTRAINT {q(UNIQUE_EXTERNAL_ID)} DO NOTHING RETURNING id
), campaign AS (
  {campaign}
), queue AS (
  {queue}
), slot AS (
  UPDATE {template} SET rotation_cursor = rotation_cursor + %(count)s
   WHERE id = %(template)s::uuid AND %(sequential)s::boolean AND EXISTS (SELECT 1 FROM bc)
  RETURNING rotation_cursor - %(count)s AS start
), src AS MATERIALIZED (
  SELECT s.*, nextval({sequence}::regclass) AS campaign_contact_id
    FROM ROWS FROM (json_to_recordset(%(contacts)s::json) AS (phone text, name text, external_id text,
                    due_date date, amount numeric, variables jsonb, variation_id bigint))
         WITH ORDINALITY AS s(phone, name, external_id, due_date, amount, variables, variation_id, position)
   WHERE EXISTS (SELECT 1 FROM bc)
), cc AS (
  {campaign_contact}
), contact AS (
  {contact} RETURNING variation_id
), usage AS (
  UPDATE {variation} AS v SET used_count = v.used_count + u.uses
    FROM (SELECT variation_id, count(*) AS uses FROM contact GROUP BY variation_id) AS u
   WHERE v.id = u.variation_id
)
SELECT (SELECT id FROM bc), ARRAY(SELECT phone FROM suppressed)
"""


def _insert(model: type[models.Model], given: dict[str, str], *, source: str | None, auto_pk: bool = False) -> str:
    """`INSERT INTO table (every column) SELECT …`: `given` maps field names to SQL; auto_now
    stamps take `%(now)s`; every other column its model default, prepared by the field as the
    ORM would and written as a literal (the statement stays short enough for psycopg to cache
    its parsing). Parameters are cast to their column's type, so the prepared statement's
    parameter types never depend on the values of one request."""
    meta = model._meta
    columns, values = [], []
    for field in meta.concrete_fields:
        if auto_pk and field is meta.pk:
            continue
        expression = given.get(field.name)
        if expression is None:
            if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                expression = "%(now)s"
            else:
                expression = _default_literal(field)
                if expression is None:
                    continue  # NULL: what PostgreSQL writes for a column left out
        if expression.startswith("%("):
            expression = f"{expression}::{_cast(field)}"
        columns.append(connection.ops.quote_name(column_name(field)))
        values.append(expression)
    table = connection.ops.quote_name(meta.db_table)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)}"
    return f"{sql} FROM {source}" if source else sql


def _sequence_literal(model: type[models.Model]) -> str:
    """The primary key's sequence, so the contact rows get their CampaignContact ids while the
    request's arrays are expanded (one pass, no join back on the phone)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [model._meta.db_table, model._meta.pk.column])
        return sql.Literal(cursor.fetchone()[0]).as_string(connection.connection)


def _cast(field: models.Field[Any, Any]) -> str:
    """The column's type without its modifiers: a cast to varchar(n) would truncate silently
    where the insert itself refuses a value too long."""
    db_type = field.rel_db_type(connection) if field.is_relation else field.db_type(connection)
    if db_type is None:
        raise ValueError(f"{field} has no column type")
    base = db_type.split("(")[0].strip()
    return {
        "varchar": "text",
        "timestamp with time zone": "timestamptz",
        "serial": "integer",
        "bigserial": "bigint",
        "smallserial": "smallint",
    }.get(base, base)


def _default_literal(field: models.Field[Any, Any]) -> str | None:
    if field.has_default() and callable(field.default) and field.default not in _STATIC_CALLABLE_DEFAULTS:
        raise ValueError(f"{field} has a default computed per row: the ingest statement must set it")
    if field.db_default is not models.NOT_PROVIDED:
        raise ValueError(f"{field} has a database default: the ingest statement does not handle it")
    value = field.get_db_prep_save(field.get_default(), connection)
    if value is None:
        return None
    connection.ensure_connection()
    return sql.Literal(value).as_string(connection.connection)
