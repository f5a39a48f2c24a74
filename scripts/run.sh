#!/usr/bin/env bash
# The README's run command: services, migrations, demo tenant, and every process of the system
# in the foreground. Ctrl-C stops the processes (the services keep running: `make stop`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
bash scripts/services.sh up
source scripts/local_env.sh
export DEBUG="${DEBUG:-1}" SECURE_SSL_REDIRECT="${SECURE_SSL_REDIRECT:-0}" LOG_FORMAT="${LOG_FORMAT:-text}"
PY="$ROOT/.venv/bin/python"
"$PY" manage.py migrate --noinput >/dev/null
"$PY" manage.py ensure_demo_tenant

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

"$PY" -m uvicorn config.asgi:application --app-dir backend --host 127.0.0.1 --port "$BILLING_WEB_PORT" --log-level warning &
pids+=($!)

for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$BILLING_WEB_PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
cat <<MSG

  Billing service is up.
    web      http://127.0.0.1:$BILLING_WEB_PORT/   (health: /healthz, admin: /admin/ user admin / password admin)

  Ctrl-C stops the processes; 'make stop' stops PostgreSQL, Redis and RabbitMQ.
MSG
wait -n "${pids[@]}"
