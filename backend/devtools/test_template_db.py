"""A migrated template database for the test sessions, built once per set of migrations.

Every pytest-xdist worker creates its own test database; migrating each from nothing cost ~22 s
per worker on a quiet 2-core box, all workers at once, and far more under load. Instead
`scripts/test.sh` runs this first: it migrates one database named after a hash of every
migration file (and the pinned requirements, which fix Django's own migrations), and the test
settings create each worker's database from it (`TEST["TEMPLATE"]`), so a worker's `migrate`
finds nothing left to apply. A change to any migration gives a new name, so a stale template
is never used; older templates are dropped (a run of another checkout with other migrations,
started at the same moment, would have to start again).

    python -m devtools.test_template_db      (from backend/, DATABASE_URL set) → prints the name
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

BACKEND = Path(__file__).resolve().parents[1]
PREFIX = "billing_test_tpl_"


def migrations_hash() -> str:
    digest = hashlib.sha256()
    files = sorted(BACKEND.glob("*/*/migrations/*.py")) + sorted(BACKEND.glob("*/migrations/*.py"))
    for path in [*files, BACKEND.parent / "requirements.txt"]:
        digest.update(str(path.relative_to(BACKEND.parent)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ensure_template(database_url: str) -> str:
    """The template's name, migrated; built only when no template of these migrations exists."""
    name = PREFIX + migrations_hash()
    admin_url = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        # Two checkouts' test runs starting at once: one builds, the other waits and reuses.
        admin.execute("SELECT pg_advisory_lock(hashtext(%s))", [PREFIX])
        rows = admin.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname LIKE %s",
            [PREFIX + "%"],
        ).fetchall()
        complete = (name, "migrated") in rows
        if complete:
            return name
        for stale, _ in rows:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(stale)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        env = {
            **os.environ,
            "DATABASE_URL": urlunsplit(urlsplit(database_url)._replace(path=f"/{name}")),
            "DJANGO_SETTINGS_MODULE": "config.test_settings",
        }
        env.pop("PYTEST_XDIST_WORKER", None)
        subprocess.run(
            [sys.executable, str(BACKEND.parent / "manage.py"), "migrate", "--noinput", "-v", "0"], env=env, check=True
        )
        # Marked complete only now: an interrupted build is dropped and rebuilt by the next run.
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS 'migrated'").format(sql.Identifier(name)))
    return name


if __name__ == "__main__":
    sys.stdout.write(ensure_template(os.environ["DATABASE_URL"]) + "\n")
