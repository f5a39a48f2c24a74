#!/usr/bin/env bash
# `manage.py` by hand against the local services, with the local run's settings (DEBUG on, so no
# SECRET_KEY to invent), from any directory:
#   scripts/manage.sh showmigrations
#   scripts/manage.sh create_billing_api_key --tenant demo --name "my script"
# The services must be up (`make run`, or `make services`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "[manage] no .venv yet: run 'make run' (or 'bash scripts/bootstrap.sh') first" >&2; exit 1; }
# shellcheck source=scripts/dev_env.sh
source "$ROOT/scripts/dev_env.sh"
exec "$PY" "$ROOT/manage.py" "$@"
