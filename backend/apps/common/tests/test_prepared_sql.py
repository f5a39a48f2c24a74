"""prepared_sql: Django's connection, its transaction and error classes, a plan kept per connection."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError
from django.test.utils import CaptureQueriesContext

from apps.common import prepared_sql
from apps.tenancy.models import Tenant

pytestmark = pytest.mark.django_db(transaction=True)

RENAME = "UPDATE tenancy_tenant SET name = %(name)s WHERE id = %(id)s"


def test_it_runs_in_the_orm_transaction_and_rolls_back_with_it():
    tenant = Tenant.objects.create(name="Before", slug="prepared-rollback")
    with pytest.raises(RuntimeError), transaction.atomic():
        assert prepared_sql.run(RENAME, {"name": "Inside", "id": tenant.pk}).rowcount == 1
        assert Tenant.objects.get(pk=tenant.pk).name == "Inside"  # the ORM sees it: one transaction
        raise RuntimeError("roll back")
    assert Tenant.objects.get(pk=tenant.pk).name == "Before"


def test_rows_come_back_and_the_plan_is_prepared_once_and_generic():
    tenant = Tenant.objects.create(name="Clinic", slug="prepared-plan")
    query = "SELECT name FROM tenancy_tenant WHERE id = %(id)s"
    for _ in range(3):
        assert prepared_sql.run(query, {"id": tenant.pk}).rows == [("Clinic",)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(generic_plans), sum(custom_plans) FROM pg_prepared_statements "
            "WHERE statement = 'SELECT name FROM tenancy_tenant WHERE id = $1'"
        )
        prepared, generic, custom = cursor.fetchone()
    assert prepared == 1, "prepared once on this connection, then reused"
    assert (generic, custom) == (3, 0), "one generic plan, never re-planned per execution"


def test_django_error_classes_and_query_log():
    with CaptureQueriesContext(connection) as captured:
        prepared_sql.run(RENAME, {"name": "x", "id": "00000000-0000-0000-0000-000000000000"})
    assert [q["sql"] for q in captured.captured_queries] == [RENAME]
    with pytest.raises(ProgrammingError):
        prepared_sql.run("SELECT no_such_column FROM tenancy_tenant")


def test_a_connection_the_server_dropped_is_replaced_as_djangos_own_cursor_would():
    """The consumer hands pooled connections between threads and asks for a health check after
    an idle spell (`health_check_done = False`), as Django does per request: a prepared
    statement must get the same check, not fail on a connection the server closed meanwhile."""
    from django.db import connections

    prepared_sql.run("SELECT 1")
    dropped = connection.connection.info.backend_pid
    killer = connections.create_connection("default")
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [dropped])
    finally:
        killer.close()
    connection.health_check_done = False  # what the consumer's permit pool does after idling
    assert prepared_sql.run("SELECT 1").rows == [(1,)]
    assert connection.connection.info.backend_pid != dropped
