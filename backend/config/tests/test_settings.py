"""Settings refuse unsafe or unsupported configurations at start-up."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def run_check(**env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL"}}
    env.update(env_overrides)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_it_refuses_to_start_without_secret_key_when_debug_is_off():
    result = run_check(DATABASE_URL=os.environ["DATABASE_URL"])
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_it_refuses_sqlite():
    result = run_check(SECRET_KEY="x", DATABASE_URL="sqlite:////tmp/db.sqlite3")
    assert result.returncode != 0
    assert "Only PostgreSQL is supported" in result.stderr


def test_it_requires_database_url():
    result = run_check(SECRET_KEY="x")
    assert result.returncode != 0
    assert "DATABASE_URL must be set" in result.stderr


@pytest.mark.parametrize("debug", ["1", "0"])
def test_it_starts_with_a_postgres_url(debug):
    result = run_check(SECRET_KEY="x", DEBUG=debug, DATABASE_URL=os.environ["DATABASE_URL"])
    assert result.returncode == 0, result.stderr


def test_debug_is_off_by_default(settings):
    assert os.environ.get("DEBUG") in (None, "", "0")
    assert settings.DEBUG is False
