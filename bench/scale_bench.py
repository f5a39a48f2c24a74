#!/usr/bin/env python
"""Scale, recovery and isolation benchmark for `run_billing_consumer` (issue #14).

Three questions, measured on real processes with the default consumer settings:

1. **Scale.** Can ONE consumer process keep 1,000 throttled queues at pace (1,000 WhatsApp
   numbers at 6 messages a minute each: 100 messages a second in all, the sandbox answering at
   once)? Each queue belongs to its own tenant and number. Per number, the pace error is
   |mean interval between its sends − the configured interval| / the configured interval
   (target ≤ 1 %); a queue is "at full pace" when it sent at least 95 % of what its pace allows
   in the window. Reported with the consumer's CPU (target ≤ 1 core), CPU per message, memory,
   threads and peak database connections (target ≤ 10).
2. **Recovery.** SIGKILL the consumer mid-queue, start a new one at once (as a restart policy
   would): how long until the first send again (target ≤ 60 s), and until every queue moves?
3. **Isolation.** Tenant A's six numbers answer 429 with `Retry-After: 86400` (then, in a second
   round, hang): how long do tenant B's 10 notifications take (target ≤ 10 s)?

Everything it touches is its own: a database (`billing_scale_bench`, created, migrated and
dropped), a RabbitMQ node on free ports under a temporary directory (backend/devtools/second_broker.py),
a Redis database number (`--redis-db`), and a sandbox process (the Evolution API stand-in).

    source scripts/local_env.sh && .venv/bin/python bench/scale_bench.py

Prints a table and writes `bench/results/scale.json`. See docs/performance.md,
"Scale, recovery and isolation".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "backend"))
from devtools.processes import ManagedProcess, machine_busy, process_cpu

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend"
RESULTS_PATH = ROOT / "bench" / "results" / "scale.json"
FULL_PACE = 0.95  # a queue sent at least this share of what its pace allows


def log(message: str) -> None:
    print(f"[scale-bench] {message}", file=sys.stderr, flush=True)


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def with_redis_db(url: str, db: int) -> str:
    return with_path(url, f"/{db}")


# --------------------------------------------------------------------------- isolation
def create_database(db_url: str) -> None:
    import psycopg

    name = urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(with_path(db_url, "/postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(db_url: str) -> None:
    import psycopg

    name = urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(with_path(db_url, "/postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- Django side
def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def make_tenants(
    count: int,
    sandbox: Any,
    rate: int,
    stale_seconds: int,
    health_cache: int | None,
    *,
    prefix: str = "bench",
    numbers_per_tenant: int = 1,
) -> list[dict[str, Any]]:
    """`count` numbers, each a tenant of its own unless `numbers_per_tenant` > 1 (then one tenant
    owns them all). Warm-up is skipped: these are long-lived numbers, not new ones."""
    from django.utils import timezone

    from apps.billing.models import BillingConfig
    from apps.billing.services.tenant_setup import ALWAYS_OPEN, setup_tenant
    from apps.connections.models import WhatsAppInstance

    tenants = []
    for i in range(count):
        info = sandbox.create_instance(name=f"{prefix}-{i:04d}")
        slug = prefix if numbers_per_tenant > 1 else f"{prefix}-{i:04d}"
        result = setup_tenant(
            name=slug,
            slug=slug,
            evolution_url=sandbox.base_url,
            evolution_api_key=info.token,
            instance_name=info.name,
            messages_per_minute=rate,
            business_hours=ALWAYS_OPEN,
        )
        tuning = {"stale_threshold_seconds": stale_seconds}
        if health_cache is not None:
            tuning["health_cache_seconds"] = health_cache
        BillingConfig.objects.filter(tenant=result.tenant).update(**tuning)
        WhatsAppInstance.objects.filter(pk=result.instance.pk).update(warmup_skipped_at=timezone.now())
        tenants.append({"tenant": result.tenant, "instance": info.name})
    return tenants


def ingest(tenants: list[dict[str, Any]], contacts_per_queue: int, *, external_prefix: str = "scale") -> list[str]:
    from apps.billing.services.billing_campaign_service import BillingCampaignService

    queue_ids = []
    for i, entry in enumerate(tenants):
        contacts = [
            {
                "phone": f"+55119{(i * 10_000 + j) % 100_000_000:08d}",
                "name": f"Cliente {j}",
                "variables": {"message": "Aviso do benchmark."},
            }
            for j in range(contacts_per_queue)
        ]
        data = {"external_id": f"{external_prefix}-{i}", "instance": entry["instance"], "contacts": contacts}
        result = BillingCampaignService(tenant=entry["tenant"], api_key=None).ingest(
            template_type="notification", data=data, raw_payload=data
        )
        queue_ids.append(result.body["queue_id"])
    return queue_ids


def local_ports(pid: int) -> set[int]:
    """Local TCP ports of process `pid` (its sockets matched by inode in /proc/net)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def db_connections(pid: int) -> int:
    """Sessions on the bench database opened by process `pid`."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND client_port = ANY(%s)",
            [sorted(local_ports(pid))],
        )
        return int(cursor.fetchone()[0])


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def queue_statuses(queue_ids: list[str]) -> Counter:
    from apps.billing.models import BillingQueue

    return Counter(BillingQueue.objects.filter(pk__in=queue_ids).values_list("status", flat=True))


def message_times(sandbox: Any) -> dict[str, list[float]]:
    """Per sandbox instance, the Unix times of the messages it accepted."""
    per_instance: dict[str, list[float]] = {}
    for message in sandbox.messages():
        at = datetime.fromisoformat(message["created_at"].replace("Z", "+00:00")).timestamp()
        per_instance.setdefault(message["instance"], []).append(at)
    for times in per_instance.values():
        times.sort()
    return per_instance


# --------------------------------------------------------------------------- the measurements
def measure_pace(
    args: argparse.Namespace,
    consumer: ManagedProcess,
    sandbox_pid: int,
    sandbox: Any,
    tenants: list[dict[str, Any]],
    queue_ids: list[str],
) -> dict[str, Any]:
    deadline = time.monotonic() + args.warmup
    while time.monotonic() < deadline:
        statuses = queue_statuses(queue_ids)
        if statuses.get("running", 0) == len(queue_ids):
            break
        time.sleep(1)
    time.sleep(60 / args.rate)  # every queue past its first send: the window sees steady state
    log(f"warm-up done: {dict(queue_statuses(queue_ids))}; measuring {args.duration}s")
    cpu0, wall0, start, machine0 = consumer.cpu_seconds(), time.monotonic(), time.time(), machine_busy()
    sandbox0 = process_cpu(sandbox_pid)
    peak_connections = peak_threads = 0
    while time.monotonic() - wall0 < args.duration:
        peak_connections = max(peak_connections, db_connections(consumer.pid))
        peak_threads = max(peak_threads, thread_count(consumer.pid))
        time.sleep(0.5)
    cpu1, wall1, end = consumer.cpu_seconds(), time.monotonic(), time.time()
    times = message_times(sandbox)
    interval = 60 / args.rate
    expected = (end - start) / interval
    achieved, errors, sent_total = [], [], 0
    for entry in tenants:
        window = [t for t in times.get(entry["instance"], []) if start <= t < end]
        sent_total += len(window)
        achieved.append(len(window) / expected)
        if len(window) >= 2:
            mean_gap = (window[-1] - window[0]) / (len(window) - 1)
            errors.append(abs(mean_gap - interval) / interval)
    cpu = sum(cpu1) - sum(cpu0)
    return {
        "queues": len(tenants),
        "rate_per_queue_per_minute": args.rate,
        "window_seconds": round(end - start, 1),
        "queues_at_full_pace": sum(1 for share in achieved if share >= FULL_PACE),
        "share_of_pace": {
            "min": round(min(achieved), 3),
            "median": round(statistics.median(achieved), 3),
            "max": round(max(achieved), 3),
        },
        "pace_error": {
            "median": round(statistics.median(errors), 5),
            "p99": round(sorted(errors)[int(0.99 * (len(errors) - 1))], 5),
            "max": round(max(errors), 5),
            "instances_over_1pct": sum(1 for e in errors if e > 0.01),
        },
        "messages_per_second": round(sent_total / (end - start), 1),
        "target_messages_per_second": round(len(tenants) * args.rate / 60, 1),
        "consumer_cpu_cores": round(cpu / (wall1 - wall0), 3),
        "consumer_cpu_ms_per_message": round(1000 * cpu / max(sent_total, 1), 2),
        "consumer_cpu_system_share": round((cpu1[1] - cpu0[1]) / max(cpu, 1e-9), 3),
        "machine_load_cores": round((machine_busy() - machine0) / (wall1 - wall0), 2),
        "sandbox_cpu_cores": round((process_cpu(sandbox_pid) - sandbox0) / (wall1 - wall0), 2),
        "consumer_rss_mb": round(consumer.rss_mb(), 1),
        "consumer_threads_peak": peak_threads,
        "db_connections_peak_consumer": peak_connections,
        "db_pool_max_size": args.pool,
    }


def measure_recovery(
    args: argparse.Namespace,
    consumer: ManagedProcess,
    start_consumer: Any,
    sandbox: Any,
    tenants: list[dict[str, Any]],
    queue_ids: list[str],
) -> tuple[dict[str, Any], ManagedProcess]:
    from apps.billing.models import BillingContact

    killed_at = time.time()
    consumer.kill(signal.SIGKILL)
    log(f"SIGKILL consumer {consumer.pid}; starting a new one at once")
    consumer = start_consumer()
    deadline = time.monotonic() + 150
    moved: dict[str, float] = {}
    while len(moved) < len(tenants) and time.monotonic() < deadline:
        times = message_times(sandbox)
        for entry in tenants:
            if entry["instance"] in moved:
                continue
            later = [t for t in times.get(entry["instance"], []) if t > killed_at + 0.5]
            if later:
                moved[entry["instance"]] = later[0] - killed_at
        time.sleep(1)
    delays = sorted(moved.values())
    requests = Counter()
    for message in sandbox.messages():
        requests[(message["instance"], message["number"])] += 1
    return {
        "dead_after_seconds": 30,
        "heartbeat_seconds": 5,
        "periodic_interval_seconds": 5,
        "queues_moving_again": len(moved),
        "queues": len(tenants),
        "first_send_again_seconds": round(delays[0], 1) if delays else None,
        "seconds_until_moving": {"median": round(statistics.median(delays), 1), "max": round(delays[-1], 1)}
        if delays
        else None,
        "contacts_interrupted": BillingContact.objects.filter(queue_id__in=queue_ids, error_code="interrupted").count(),
        "numbers_sent_twice": sum(1 for count in requests.values() if count > 1),
    }, consumer


def measure_isolation(args: argparse.Namespace, sandbox: Any, start_consumer: Any) -> dict[str, Any]:
    """Tenant A: one tenant with six numbers behind a day-long Retry-After (then hanging);
    tenant B: 10 notifications. Each round on a fresh consumer with the default settings."""
    from django.utils import timezone

    from apps.billing.models import BillingQueue
    from apps.connections.models import WhatsAppInstance

    results = {}
    for round_name, fault in (
        ("retry_after_86400", {"rate_limited": True, "retry_after": 86_400}),
        ("hang", {"hang": True, "hang_seconds": 600}),
    ):
        consumer = start_consumer()
        time.sleep(3)
        tenant_a = make_tenants(6, sandbox, 600, 600, None, prefix=f"iso-a-{round_name}", numbers_per_tenant=6)
        tenant_b = make_tenants(1, sandbox, 600, 600, None, prefix=f"iso-b-{round_name}")
        for entry in tenant_a:
            sandbox.configure(entry["instance"], **fault)
        WhatsAppInstance.objects.filter(instance_name__in=[e["instance"] for e in tenant_a]).update(
            health_state="open", health_checked_at=timezone.now()
        )  # straight to sending: the send hangs
        ingest(tenant_a, 20, external_prefix=f"iso-a-{round_name}")
        time.sleep(3)  # A's queues are claimed and waiting (or hanging)
        started = time.monotonic()
        [queue_b] = ingest(tenant_b, 10, external_prefix=f"iso-b-{round_name}")
        deadline = started + 60
        while BillingQueue.objects.get(pk=queue_b).status != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - started
        held = BillingQueue.objects.filter(tenant__slug__startswith=f"iso-a-{round_name}")
        results[round_name] = {
            "tenant_b_10_messages_seconds": round(took, 2),
            "tenant_b_sent": len(sandbox.messages(instance=tenant_b[0]["instance"])),
            "tenant_a_queues": dict(Counter(held.values_list("status", flat=True))),
            "tenant_a_pause_reasons": dict(Counter(held.values_list("pause_reason", flat=True))),
        }
        consumer.stop(grace=30)
        log(f"isolation {round_name}: {results[round_name]}")
    return results


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=1000, help="throttled queues (one tenant/number each)")
    parser.add_argument("--rate", type=int, default=6, help="messages per minute per queue")
    parser.add_argument("--pool", type=int, default=10, help="the consumer's DB_POOL_MAX_SIZE")
    parser.add_argument("--warmup", type=float, default=90, help="seconds allowed for every queue to start")
    parser.add_argument("--duration", type=float, default=120, help="measuring window, seconds")
    parser.add_argument("--redis-db", type=int, default=11)  # not 1–4: the test workers
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--skip-isolation", action="store_true")
    parser.add_argument("--only-isolation", action="store_true", help="skip the scale and recovery parts")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs (printed path)")
    return parser.parse_args(argv)


TARGETS = {
    "pace_error": 0.01,
    "cpu_cores": 1.0,
    "db_connections": 10,
    "first_send_again_seconds": 60.0,
    "isolation_seconds": 10.0,
}


def verdicts(report: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    rows = []
    pace = report.get("pace")
    if pace:
        rows += [
            (
                "queues at full pace",
                f"{pace['queues_at_full_pace']} / {pace['queues']}",
                "all",
                pace["queues_at_full_pace"] == pace["queues"],
            ),
            (
                "pace error per number (max)",
                f"{100 * pace['pace_error']['max']:.2f} %",
                "≤ 1 %",
                pace["pace_error"]["max"] <= TARGETS["pace_error"],
            ),
            ("messages/s (target)", f"{pace['messages_per_second']} ({pace['target_messages_per_second']})", "", True),
            (
                "consumer CPU",
                f"{pace['consumer_cpu_cores']} core",
                "≤ 1 core",
                pace["consumer_cpu_cores"] <= TARGETS["cpu_cores"],
            ),
            ("CPU per message", f"{pace['consumer_cpu_ms_per_message']} ms", "", True),
            ("consumer memory / threads", f"{pace['consumer_rss_mb']} MB / {pace['consumer_threads_peak']}", "", True),
            (
                "DB connections (peak)",
                str(pace["db_connections_peak_consumer"]),
                "≤ 10",
                pace["db_connections_peak_consumer"] <= TARGETS["db_connections"],
            ),
            ("machine busy", f"{pace['machine_load_cores']} / {os.cpu_count()} cores", "", True),
        ]
    recovery = report.get("recovery")
    if recovery:
        first = recovery["first_send_again_seconds"]
        rows += [
            ("first send again after SIGKILL", f"{first} s", "≤ 60 s", first is not None and first <= 60),
            (
                "every queue moving again",
                f"{recovery['queues_moving_again']} / {recovery['queues']} "
                f"(max {recovery['seconds_until_moving'] and recovery['seconds_until_moving']['max']} s)",
                "",
                True,
            ),
            ("numbers sent twice", str(recovery["numbers_sent_twice"]), "0", recovery["numbers_sent_twice"] == 0),
        ]
    for name, result in (report.get("isolation") or {}).items():
        seconds = result["tenant_b_10_messages_seconds"]
        rows.append(
            (
                f"tenant B's 10 messages, A {name}",
                f"{seconds} s",
                "≤ 10 s",
                seconds <= TARGETS["isolation_seconds"] and result["tenant_b_sent"] == 10,
            )
        )
    return rows


def print_table(rows: list[tuple[str, str, str, bool]]) -> None:
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'measure':<{width}}{'value':<34}{'target':<12}verdict")
    for name, value, target, ok in rows:
        print(f"{name:<{width}}{value:<34}{target:<12}{('PASS' if ok else 'FAIL') if target else ''}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base_db = os.environ.get("DATABASE_URL")
    if not base_db:
        log("DATABASE_URL is not set: run `source scripts/local_env.sh` first")
        return 2
    from devtools.sandbox_process import SandboxProcess
    from devtools.second_broker import SecondBroker

    db_url = with_path(base_db, "/billing_scale_bench")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"billing-scale-bench-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    broker = SecondBroker()
    sandbox_process = SandboxProcess(log_path=workdir / "sandbox.log")
    processes: list[ManagedProcess] = []
    report: dict[str, Any] = {}
    try:
        log("starting a private RabbitMQ node and the sandbox; creating the database")
        broker.start()
        sandbox_process.start()
        create_database(db_url)
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "RABBITMQ_URL": broker.url,
            "REDIS_URL": with_redis_db(os.environ.get("REDIS_URL", "redis://127.0.0.1:56379/0"), args.redis_db),
            "SECRET_KEY": "scale-bench-only",
            "DEBUG": "0",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            "EVOLUTION_RETRY_BACKOFF": "0",
            "EVOLUTION_SEND_DEADLINE": "5",
            "EVOLUTION_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        }
        env.pop("TEST_DATABASE_NAME", None)
        consumer_env = {**env, "DB_POOL_MAX_SIZE": str(args.pool)}
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        setup_django(env)
        from apps.common.redis_client import get_redis

        get_redis().flushdb()  # only our database number: the pace slots of earlier runs
        sandbox = sandbox_process.client()
        if args.only_isolation:
            args.queues, args.skip_recovery = 0, True
        log(f"creating {args.queues} tenants, each with its own number")
        tenants = make_tenants(args.queues, sandbox, args.rate, 600, None)
        contacts = int(args.rate * (args.warmup + args.duration + 240) / 60) + 5
        runs = 0

        def start_consumer() -> ManagedProcess:
            nonlocal runs
            runs += 1
            handle = ManagedProcess(["run_billing_consumer"], consumer_env, workdir / f"consumer-{runs}.log")
            processes.append(handle)
            return handle

        consumer = start_consumer()
        processes.append(ManagedProcess(["run_billing_periodic_tasks"], env, workdir / "periodic.log"))
        time.sleep(3)
        queue_ids: list[str] = []
        if tenants:
            log(f"ingesting {args.queues} queues of {contacts} contacts")
            queue_ids = ingest(tenants, contacts)
            report["pace"] = measure_pace(args, consumer, sandbox_process.pid, sandbox, tenants, queue_ids)
            log(json.dumps(report["pace"]))
        if not args.skip_recovery:
            report["recovery"], consumer = measure_recovery(args, consumer, start_consumer, sandbox, tenants, queue_ids)
            log(json.dumps(report["recovery"]))
        consumer.stop(grace=30)
        if not args.skip_isolation:
            from apps.billing.models import BillingQueue

            BillingQueue.objects.filter(pk__in=queue_ids).update(status="cancelled")  # the scale load ends here
            report["isolation"] = measure_isolation(args, sandbox, start_consumer)
        report["config"] = {
            "consumer": "run_billing_consumer (defaults)",
            "db_pool_max_size": args.pool,
            "rate": args.rate,
            "queues": args.queues,
        }
        report["machine"] = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_at_end": os.getloadavg(),
        }
        report["finished_at"] = datetime.now(UTC).isoformat()
        rows = verdicts(report)
        report["verdicts"] = [{"measure": n, "value": v, "target": t, "pass": ok} for n, v, t, ok in rows]
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_PATH.write_text(json.dumps(report, indent=2))
        print_table(rows)
    finally:
        for handle in processes:
            handle.stop(grace=30)
        sandbox_process.stop()
        if "apps.billing.broker.publisher" in sys.modules:  # our own wake-up calls' connection
            sys.modules["apps.billing.broker.publisher"].get_publisher().close()
        broker.close()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        drop_database(db_url)
        log(f"process logs in {workdir}" if args.keep_logs else "done")
        if not args.keep_logs:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
