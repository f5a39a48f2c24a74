#!/usr/bin/env bash
# The README's run command: services, migrations, a demo tenant, and every process of the system
# (web, consumer, periodic tasks, Evolution sandbox) in the foreground. Ctrl-C stops the
# processes and exits 0; the services keep running (`make stop` stops them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
bash scripts/services.sh up
# shellcheck source=scripts/dev_env.sh
source scripts/dev_env.sh
PY="$ROOT/.venv/bin/python"
SANDBOX_KEY="${SANDBOX_API_KEY:-sandbox-global-key}"
SANDBOX_TOKEN="${SANDBOX_INSTANCE_TOKEN:-demo-instance-token}"
LOGS="$BILLING_LOCAL_DIR/logs"
mkdir -p "$LOGS"

"$PY" manage.py migrate --noinput >/dev/null
DJANGO_SUPERUSER_PASSWORD=admin "$PY" manage.py createsuperuser --noinput --username admin --email admin@example.com \
  >/dev/null 2>&1 || true
# One demo key at a time: the setup below issues a fresh one (a secret is never stored, so it
# cannot be shown again), and the previous runs' keys are revoked rather than left to pile up.
DEMO_KEY_NAME="make run"
DEMO_KEY_NAME="$DEMO_KEY_NAME" "$PY" manage.py shell --no-imports -c '
import os
from apps.billing.models import BillingAPIKey
for key in BillingAPIKey.objects.filter(tenant__slug="demo", name=os.environ["DEMO_KEY_NAME"], is_active=True):
    key.revoke()'
setup_json="$("$PY" manage.py billing_setup_tenant --tenant "Demo Clinic" --slug demo \
  --evolution-url "http://127.0.0.1:$BILLING_SANDBOX_PORT" --evolution-api-key "$SANDBOX_TOKEN" --instance demo \
  --business-hours "mon-fri 08:00-18:00; sat 08:00-12:00" --key-name "$DEMO_KEY_NAME" --json)"
API_KEY="$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["api_key"])' <<<"$setup_json")"

pids=()
stop_children() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
# Ctrl-C (or a TERM) is how a local run ends: stop the processes and exit 0, so `make run` does not
# report "Error 130". Any other exit stops them too.
trap 'trap - EXIT; stop_children; echo "[run] stopped" >&2; exit 0' INT TERM
trap stop_children EXIT

start() {  # start <name> <command...>: run in the background, log to .local/logs/<name>.log
  local name="$1"; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  pids+=($!)
}

start sandbox "$PY" manage.py run_evolution_sandbox --port "$BILLING_SANDBOX_PORT" --api-key "$SANDBOX_KEY" \
  --instance "demo:$SANDBOX_TOKEN"
DB_POOL_MAX_SIZE="${DB_POOL_MAX_SIZE:-4}" start web "$PY" -m uvicorn config.asgi:application --app-dir backend --host 127.0.0.1 --port "$BILLING_WEB_PORT"
METRICS_PORT=9101 start consumer "$PY" manage.py run_billing_consumer
METRICS_PORT=9102 start periodic "$PY" manage.py run_billing_periodic_tasks
METRICS_PORT=9103 start callbacks "$PY" manage.py run_billing_callbacks
METRICS_PORT=9104 start charges "$PY" manage.py run_charges_periodic
METRICS_PORT=9105 start retention "$PY" manage.py run_privacy_retention

for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$BILLING_WEB_PORT/healthz" >/dev/null 2>&1 \
    && curl -fsS "http://127.0.0.1:$BILLING_SANDBOX_PORT/" >/dev/null 2>&1 && break
  sleep 0.5
done
# The sandbox keeps its webhook in memory: point it at us on every start, so delivery and read
# receipts (and replies) come back to the demo tenant as they would from Evolution.
if ! "$PY" manage.py configure_evolution_webhook --tenant demo --instance demo \
  --base-url "http://127.0.0.1:$BILLING_WEB_PORT" >"$LOGS/webhook.log" 2>&1; then
  echo "[run] the sandbox's webhook could not be set (see $LOGS/webhook.log): receipts will not come back" >&2
fi
BASE="http://127.0.0.1:$BILLING_WEB_PORT"
cat <<MSG

  The billing service is up (logs in $LOGS).
    API docs  $BASE/api/v1/billing/docs/     (Redoc: /api/v1/billing/redoc/)
    admin     $BASE/admin/                   user admin, password admin
    inbox     $BASE/inbox/                   the staff inbox (same user)
    sandbox   http://127.0.0.1:$BILLING_SANDBOX_PORT/_sandbox/messages   (the fake WhatsApp provider's messages)
    health    $BASE/healthz                  ready: $BASE/readyz
    metrics   $BASE/metrics (web), :9101/metrics (consumer), :9102/metrics (periodic), :9103/metrics (callbacks), :9104/metrics (charges), :9105/metrics (retention)

  Send a first message (notifications go out 24/7; overdue/upcoming only in business hours) and keep
  the status_url it answers:

    STATUS_URL=\$(curl -s -X POST $BASE/api/v1/billing/send/notification \\
      -H 'Content-Type: application/json' -H 'X-Billing-API-Key: $API_KEY' \\
      -d '{"external_id": "first-1", "contacts": [{"phone": "(11) 99876-5432", "name": "Maria Silva",
           "variables": {"message": "Sua consulta é amanhã às 14h."}}]}' \\
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["status_url"])')

  then follow it (sent, then delivered and read as the sandbox's receipts come back):

    curl -s "$BASE\$STATUS_URL" -H 'X-Billing-API-Key: $API_KEY'

  and see the message the sandbox received:

    curl -s http://127.0.0.1:$BILLING_SANDBOX_PORT/_sandbox/messages

  This key replaces the previous run's. Ctrl-C stops the processes; 'make stop' stops PostgreSQL,
  Redis and RabbitMQ.
MSG
wait -n "${pids[@]}"
echo "[run] a process exited; see $LOGS" >&2
