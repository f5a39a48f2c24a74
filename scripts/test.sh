#!/usr/bin/env bash
# The README's test command: set everything up from nothing, then run every test.
#   scripts/test.sh [pytest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
bash scripts/services.sh up
bash scripts/browser.sh ensure   # headless Chromium for the progress-page test
source scripts/local_env.sh
export DEBUG=0 SECRET_KEY="test-only-secret-key-$(hostname)" SECURE_SSL_REDIRECT=0 LOG_FORMAT=text
PY="$ROOT/.venv/bin/python"
echo "[test] makemigrations --check" >&2
"$PY" manage.py makemigrations --check --dry-run >/dev/null || { echo "[test] missing migrations" >&2; "$PY" manage.py makemigrations --check --dry-run; exit 1; }
echo "[test] check --deploy (production settings)" >&2
DEBUG=0 SECURE_SSL_REDIRECT=1 ALLOWED_HOSTS=billing.example.com SECRET_KEY="$(head -c 48 /dev/urandom | base64)" \
  FIELD_ENCRYPTION_KEYS="$(head -c 32 /dev/urandom | base64 | tr '+/' '-_')" PERSONAL_DATA_HASH_KEY="$(head -c 48 /dev/urandom | base64)" \
  "$PY" manage.py check --deploy --fail-level WARNING
echo "[test] pytest" >&2
exec "$PY" -m pytest "$@"
