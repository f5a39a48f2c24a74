#!/usr/bin/env bash
# The README's test command: set everything up from nothing, then run every test under coverage.
#   scripts/test.sh                  the whole suite; fails below a coverage floor
#   scripts/test.sh [pytest args...] part of it; coverage printed, floors not checked
# The services stay up afterwards (`make stop` stops them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
bash scripts/services.sh up
bash scripts/browser.sh ensure   # headless Chromium for the progress-page test
export BILLING_REDIS_DB="${BILLING_REDIS_DB:-1}"   # database 0 is the local run's (make run)
source scripts/local_env.sh
export DEBUG=0 SECRET_KEY="test-only-secret-key-$(hostname)" SECURE_SSL_REDIRECT=0 LOG_FORMAT=text
PY="$ROOT/.venv/bin/python"
echo "[test] ruff check, ruff format --check" >&2
"$ROOT/.venv/bin/ruff" check --quiet .
"$ROOT/.venv/bin/ruff" format --check --quiet .
echo "[test] mypy" >&2
"$ROOT/.venv/bin/mypy"   # pyproject.toml, [tool.mypy]: loads the settings, needs no service; cache in .mypy_cache
echo "[test] makemigrations --check" >&2
"$PY" manage.py makemigrations --check --dry-run >/dev/null || { echo "[test] missing migrations" >&2; "$PY" manage.py makemigrations --check --dry-run; exit 1; }
echo "[test] check --deploy (production settings)" >&2
DEBUG=0 SECURE_SSL_REDIRECT=1 ALLOWED_HOSTS=billing.example.com SECRET_KEY="$(head -c 48 /dev/urandom | base64)" \
  FIELD_ENCRYPTION_KEYS="$(head -c 32 /dev/urandom | base64 | tr '+/' '-_')" PERSONAL_DATA_HASH_KEY="$(head -c 48 /dev/urandom | base64)" \
  "$PY" manage.py check --deploy --fail-level WARNING

# Bytecode caches, even where the environment says PYTHONDONTWRITEBYTECODE (this machine's does):
# without them every worker rewrites the asserts of ~500 test modules and every process the tests
# start (consumers, sandboxes, a hundred of them) compiles the sources again — collection took
# 12.5 s of CPU per worker, 5.6 s from a warm cache. One collection first warms the cache for all.
unset PYTHONDONTWRITEBYTECODE
"$PY" -m compileall -q -j0 backend >/dev/null

# Coverage (pyproject.toml, [tool.coverage]): the processes the tests start are measured too and
# combined here; the report lists every file not fully covered, with its branch columns.
# pytest-xdist: BILLING_TEST_WORKERS sessions side by side (the tests mostly wait on I/O, so
# more workers than cores pay); each has its own test database, Redis database (BILLING_REDIS_DB
# plus its number), RabbitMQ vhost (config/test_settings.py) and, for the crash tests, RabbitMQ
# node, so any test runs on any worker (no `xdist_group`: pytest 9.2 broke it, backend/conftest.py).
# `--maxschedchunk 1`: a worker is handed one test more whenever it finishes one, so the workers
# end together (xdist's default chunks of up to ~200 tests, or `worksteal`'s contiguous runs,
# left one worker finishing a minute after the others under load). The workers are
# processes the tests start too: coverage measures them, and the processes they start, alike.
# One migrated template database, rebuilt only when a migration changes; each worker's database
# is a copy of it (backend/devtools/test_template_db.py), instead of every worker migrating.
echo "[test] template database" >&2
BILLING_TEST_TEMPLATE_DB="$(cd backend && "$PY" -m devtools.test_template_db)"
export BILLING_TEST_TEMPLATE_DB
WORKERS="${BILLING_TEST_WORKERS:-6}"
echo "[test] pytest under coverage, $WORKERS workers" >&2
"$PY" -m pytest --collect-only -q "$@" >/dev/null 2>&1 || true   # warms the assertion-rewrite cache (above)
"$PY" -m coverage erase
status=0
# --durations: the slowest tests, the first place to look when the suite grows.
"$PY" -m coverage run -m pytest -n "$WORKERS" --dist load --maxschedchunk 1 --durations=15 "$@" || status=$?
"$PY" -m coverage combine --quiet
"$PY" -m coverage report
[ "$status" = 0 ] || exit "$status"
[ $# = 0 ] || exit 0

# Floors, set a little under the figures measured when they were introduced (docs/architecture.md,
# "Engineering checks"): statements and branches together, as the report's Cover column counts them.
floor() {  # floor <percent> <what> [coverage report --include pattern]
  local percent="$1" what="$2"; shift 2
  local total
  total="$("$PY" -m coverage report --format=total --precision=1 "$@")"
  echo "[test] coverage of $what: $total % (floor $percent %)" >&2
  "$PY" -m coverage report --fail-under="$percent" "$@" >/dev/null \
    || { echo "[test] coverage of $what is below its floor of $percent %" >&2; return 1; }
}
floor 90 "the whole tree"
floor 88 apps/billing --include="backend/apps/billing/*"
floor 92 apps/common --include="backend/apps/common/*"
