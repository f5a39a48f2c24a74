#!/usr/bin/env bash
# Local PostgreSQL, Redis and RabbitMQ for the local run and the tests.
#
#   scripts/services.sh up      install (Debian, as root) if missing, start, wait until each answers
#   scripts/services.sh down    stop what `up` started
#   scripts/services.sh status  one line per service
#
# Every server runs as a plain local process on loopback, with its data and logs under
# $BILLING_LOCAL_DIR (default: <repo>/.local, git-ignored). Running `up` twice reuses what runs.
# Ports are not the defaults so that a system-wide server on the same machine does not collide.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/local_env.sh
source "$ROOT/scripts/local_env.sh"

LOCAL="$BILLING_LOCAL_DIR"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_DATA="$LOCAL/postgres"
REDIS_DIR="$LOCAL/redis"
RMQ_DIR="$LOCAL/rabbitmq"

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# Run a command as a service user when we are root (PostgreSQL refuses to run as root).
as_user() {
  local user="$1"; shift
  if is_root; then runuser -u "$user" -- "$@"; else "$@"; fi
}

ensure_packages() {
  local missing=()
  [ -x "$PG_BIN/pg_ctl" ] || missing+=(postgresql-15)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
  [ ${#missing[@]} -eq 0 ] && return 0
  if is_root && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # policy-rc.d keeps the packages from starting system-wide servers we do not use.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
    apt-get install -y -qq "${missing[@]}" >/dev/null
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi  # not `[ ] && rm`: its status would end the function
  else
    die "missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]}) or run as root"
  fi
}

wait_for() {  # wait_for <name> <seconds> <command...>
  local name="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && die "$name did not answer within ${timeout}s (logs under $LOCAL)"
    sleep 0.5
  done
  log "$name answers"
}

# ---------------------------------------------------------------- PostgreSQL
pg_answers() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$BILLING_PG_PORT"; }

pg_up() {
  if pg_answers; then log "postgres already running on $BILLING_PG_PORT"; return; fi
  mkdir -p "$PG_DATA"
  is_root && chown -R postgres:postgres "$PG_DATA"
  chmod 700 "$PG_DATA"
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "initdb $PG_DATA"
    as_user postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  rm -f "$PG_DATA/postmaster.pid.stale"
  as_user postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 start \
    -o "-p $BILLING_PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
  wait_for postgres 60 pg_answers
  local psql=(psql -h 127.0.0.1 -p "$BILLING_PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [ "$("${psql[@]}" -c "select 1 from pg_roles where rolname='$BILLING_PG_USER'")" != 1 ]; then
    "${psql[@]}" -c "create role $BILLING_PG_USER login superuser password '$BILLING_PG_PASSWORD'"
  fi
  if [ "$("${psql[@]}" -c "select 1 from pg_database where datname='$BILLING_PG_DB'")" != 1 ]; then
    "${psql[@]}" -c "create database $BILLING_PG_DB owner $BILLING_PG_USER"
  fi
}

pg_down() {
  [ -f "$PG_DATA/postmaster.pid" ] || { log "postgres not running"; return; }
  as_user postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null || true
  log "postgres stopped"
}

# ---------------------------------------------------------------- Redis
redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$BILLING_REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_up() {
  if redis_answers; then log "redis already running on $BILLING_REDIS_PORT"; return; fi
  mkdir -p "$REDIS_DIR"
  redis-server --port "$BILLING_REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" \
    --save '' --appendonly no >/dev/null
  wait_for redis 30 redis_answers
}

redis_down() {
  redis_answers || { log "redis not running"; return; }
  redis-cli -h 127.0.0.1 -p "$BILLING_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  log "redis stopped"
}

# ---------------------------------------------------------------- RabbitMQ
# Debian's wrapper runs the broker as user `rabbitmq`; we call the real script directly, as that
# user, in the foreground under setsid, so we own the PID and the logs.
rmq_answers() { python3 "$ROOT/backend/devtools/amqp_ping.py" 127.0.0.1 "$BILLING_RABBITMQ_PORT"; }

# Loopback only, all three listeners: AMQP (rabbitmq.conf below), the Erlang distribution port
# (inet_dist_use_interface) and epmd, which the node starts (ERL_EPMD_ADDRESS).
rmq_env() {
  env HOME="$RMQ_DIR" \
    RABBITMQ_NODENAME="billing@localhost" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$BILLING_RABBITMQ_PORT" \
    RABBITMQ_DIST_PORT="$BILLING_RABBITMQ_DIST_PORT" ERL_CRASH_DUMP="$RMQ_DIR/log/erl_crash.dump" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    ERL_EPMD_PORT="$BILLING_EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia" \
    RABBITMQ_LOG_BASE="$RMQ_DIR/log" \
    RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins" \
    RABBITMQ_PID_FILE="$RMQ_DIR/rabbitmq.pid" \
    "$@"
}

rmq_up() {
  if rmq_answers; then log "rabbitmq already running on $BILLING_RABBITMQ_PORT"; return; fi
  mkdir -p "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
  [ -f "$RMQ_DIR/enabled_plugins" ] || echo '[].' >"$RMQ_DIR/enabled_plugins"
  cat >"$RMQ_DIR/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$BILLING_RABBITMQ_PORT
loopback_users = none
disk_free_limit.absolute = 50MB
consumer_timeout = ${BILLING_RABBITMQ_CONSUMER_TIMEOUT_MS:-1800000}
EOF
  if [ ! -f "$RMQ_DIR/.erlang.cookie" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RMQ_DIR/.erlang.cookie"
    chmod 400 "$RMQ_DIR/.erlang.cookie"
  fi
  if is_root; then chown -R rabbitmq:rabbitmq "$RMQ_DIR"; fi
  log "starting rabbitmq (answers after ~10-15 s)"
  if is_root; then
    setsid runuser -u rabbitmq -- bash -c "$(declare -f rmq_env); $(declare -p RMQ_DIR BILLING_RABBITMQ_PORT BILLING_RABBITMQ_DIST_PORT BILLING_EPMD_PORT); cd "$RMQ_DIR"; rmq_env /usr/lib/rabbitmq/bin/rabbitmq-server" \
      >"$RMQ_DIR/log/console.log" 2>&1 </dev/null &
  else
    setsid bash -c "$(declare -f rmq_env); $(declare -p RMQ_DIR BILLING_RABBITMQ_PORT BILLING_RABBITMQ_DIST_PORT BILLING_EPMD_PORT); cd "$RMQ_DIR"; rmq_env /usr/lib/rabbitmq/bin/rabbitmq-server" \
      >"$RMQ_DIR/log/console.log" 2>&1 </dev/null &
  fi
  local launcher=$!
  echo $launcher >"$RMQ_DIR/launcher.pid"
  local deadline=$((SECONDS + 90))
  until rmq_answers; do
    kill -0 "$launcher" 2>/dev/null || die "rabbitmq exited; see $RMQ_DIR/log/console.log"
    [ $SECONDS -ge $deadline ] && die "rabbitmq did not answer within 90s; see $RMQ_DIR/log/console.log"
    sleep 0.5
  done
  log "rabbitmq answers"
}

rmq_down() {
  rmq_answers || { log "rabbitmq not running"; }
  local pid
  for f in "$RMQ_DIR/rabbitmq.pid" "$RMQ_DIR/launcher.pid"; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  local deadline=$((SECONDS + 30))
  while rmq_answers && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
  # epmd started for our port stays behind otherwise
  ERL_EPMD_PORT="$BILLING_EPMD_PORT" epmd -kill >/dev/null 2>&1 || true
  rm -f "$RMQ_DIR/rabbitmq.pid" "$RMQ_DIR/launcher.pid"
  log "rabbitmq stopped"
}

status() {
  pg_answers && echo "postgres  up   127.0.0.1:$BILLING_PG_PORT" || echo "postgres  down"
  redis_answers && echo "redis     up   127.0.0.1:$BILLING_REDIS_PORT" || echo "redis     down"
  rmq_answers && echo "rabbitmq  up   127.0.0.1:$BILLING_RABBITMQ_PORT" || echo "rabbitmq  down"
}

case "${1:-}" in
  up)
    mkdir -p "$LOCAL"
    ensure_packages
    pg_up & pg=$!
    redis_up & rd=$!
    rmq_up & rq=$!
    fail=0
    wait $pg || fail=1; wait $rd || fail=1; wait $rq || fail=1
    [ $fail = 0 ] || die "a service did not start"
    ;;
  down) rmq_down; redis_down; pg_down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
