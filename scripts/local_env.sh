# Sourced by the project's scripts, or by hand from any directory (`source scripts/local_env.sh`):
# the local ports and URLs. Every value can be overridden from the environment (e.g. to point the
# tests at other servers).
: "${BILLING_LOCAL_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.local}"
: "${BILLING_PG_PORT:=55432}"
: "${BILLING_PG_USER:=billing}"
: "${BILLING_PG_PASSWORD:=billing}"
: "${BILLING_PG_DB:=billing}"
: "${BILLING_REDIS_PORT:=56379}"
: "${BILLING_REDIS_DB:=0}"  # the local run's; scripts/test.sh sets 1, so tests leave nothing in it
: "${BILLING_RABBITMQ_PORT:=55672}"
: "${BILLING_RABBITMQ_DIST_PORT:=55673}"
: "${BILLING_EPMD_PORT:=54369}"
: "${BILLING_WEB_PORT:=8000}"
: "${BILLING_SANDBOX_PORT:=8081}"
export BILLING_LOCAL_DIR BILLING_PG_PORT BILLING_PG_USER BILLING_PG_PASSWORD BILLING_PG_DB \
  BILLING_REDIS_PORT BILLING_REDIS_DB BILLING_RABBITMQ_PORT BILLING_RABBITMQ_DIST_PORT BILLING_EPMD_PORT BILLING_WEB_PORT BILLING_SANDBOX_PORT
: "${DATABASE_URL:=postgres://$BILLING_PG_USER:$BILLING_PG_PASSWORD@127.0.0.1:$BILLING_PG_PORT/$BILLING_PG_DB}"
: "${REDIS_URL:=redis://127.0.0.1:$BILLING_REDIS_PORT/$BILLING_REDIS_DB}"
: "${RABBITMQ_URL:=amqp://guest:guest@127.0.0.1:$BILLING_RABBITMQ_PORT/}"
export DATABASE_URL REDIS_URL RABBITMQ_URL
