#!/usr/bin/env python
"""Scale and recovery benchmark for `run_billing_consumer` (issue #7).

Two questions, measured on real processes:

1. How many throttled queues can ONE consumer process keep at full pace? Each queue belongs to
   its own tenant with its own WhatsApp instance (so paces do not share a slot) at
   `--rate` messages a minute. A queue is "at full pace" when it sent at least 95 % of what its
   pace allows during the measuring window. Reported with the consumer's CPU use (target
   ≤ 1 core) and its peak number of database connections (bounded: ≤ concurrency + 2).
2. How long after a SIGKILL does a queue move again? The consumer is killed by PID and
   restarted at once (as a platform restart policy would); its queues are still `running` under
   a dead lease until the periodic task's stale check frees them, so the expected bound is the
   stale threshold + one periodic cycle (+ the restart itself).

Everything it touches is its own: a database (`billing_scale_bench`, created, migrated and
dropped), a RabbitMQ node on free ports under a temporary directory (tests/crash/broker.py),
a Redis database number (`--redis-db`), and a sandbox process (the Evolution API stand-in).

    cd /work/main && source scripts/local_env.sh && .venv/bin/python bench/scale_bench.py

Prints a summary and writes `bench/results/scale.json`. See docs/performance.md,
"Scale and recovery".
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend"
RESULTS_PATH = ROOT / "bench" / "results" / "scale.json"
FULL_PACE = 0.95  # a queue sent at least this share of what its pace allows
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


class Process:
    """A project process started by the bench, stopped by PID."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.process.pid

    def cpu_seconds(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the process, all its threads, from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signum)
            self.process.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM if self.process.poll() is None else signal.SIGKILL)
        self._log.close()


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (all processes: PostgreSQL, the sandbox, ...)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


# --------------------------------------------------------------------------- Django side
def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(BACKEND))
    import django

    django.setup()


def make_tenants(count: int, sandbox: Any, rate: int, stale_seconds: int,
                 health_cache: int | None) -> list[dict[str, Any]]:
    from apps.billing.models import BillingConfig
    from apps.billing.services.tenant_setup import ALWAYS_OPEN, setup_tenant

    tenants = []
    for i in range(count):
        info = sandbox.create_instance(name=f"bench-{i:04d}")
        result = setup_tenant(name=f"Bench {i:04d}", slug=f"bench-{i:04d}", evolution_url=sandbox.base_url,
                              evolution_api_key=info.token, instance_name=info.name, messages_per_minute=rate,
                              business_hours=ALWAYS_OPEN)
        tuning = {"stale_threshold_seconds": stale_seconds}
        if health_cache is not None:
            tuning["health_cache_seconds"] = health_cache
        BillingConfig.objects.filter(tenant=result.tenant).update(**tuning)
        tenants.append({"tenant": result.tenant, "instance": info.name})
    return tenants


def ingest(tenants: list[dict[str, Any]], contacts_per_queue: int) -> list[str]:
    from apps.billing.services.billing_campaign_service import BillingCampaignService

    queue_ids = []
    for i, entry in enumerate(tenants):
        contacts = [{"phone": f"+55119{(i * 10_000 + j) % 100_000_000:08d}", "name": f"Cliente {j}",
                     "variables": {"message": "Aviso do benchmark."}} for j in range(contacts_per_queue)]
        data = {"external_id": f"scale-{i}", "contacts": contacts}
        result = BillingCampaignService(tenant=entry["tenant"], api_key=None).ingest(
            template_type="notification", data=data, raw_payload=data)
        queue_ids.append(result.body["queue_id"])
    return queue_ids


def db_connections(application_prefix: str) -> tuple[int, int]:
    """(connections named `application_prefix…`, all other connections to this database)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE application_name LIKE %s), count(*) FILTER (WHERE application_name "
            "NOT LIKE %s) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            [application_prefix + "%", application_prefix + "%"])
        named, others = cursor.fetchone()
    return int(named), int(others)


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
def measure_pace(args: argparse.Namespace, consumer: Process, sandbox_pid: int, sandbox: Any,
                 tenants: list[dict[str, Any]], queue_ids: list[str]) -> dict[str, Any]:
    deadline = time.monotonic() + args.warmup
    while time.monotonic() < deadline:
        statuses = queue_statuses(queue_ids)
        if statuses.get("running", 0) == len(queue_ids):
            break
        time.sleep(1)
    log(f"warm-up done: {dict(queue_statuses(queue_ids))}; measuring {args.duration}s")
    cpu0, wall0, start, machine0 = consumer.cpu_seconds(), time.monotonic(), time.time(), machine_cpu()
    sandbox0 = process_cpu(sandbox_pid)
    peak_named = peak_others = 0
    while time.monotonic() - wall0 < args.duration:
        named, others = db_connections("billing-consumer")
        peak_named, peak_others = max(peak_named, named), max(peak_others, others)
        time.sleep(0.5)
    cpu1, wall1, end = consumer.cpu_seconds(), time.monotonic(), time.time()
    times = message_times(sandbox)
    expected = args.rate / 60 * (end - start)
    achieved = []
    for entry in tenants:
        sent = sum(1 for t in times.get(entry["instance"], []) if start <= t < end)
        achieved.append(sent / expected)
    at_full_pace = sum(1 for share in achieved if share >= FULL_PACE)
    return {
        "queues": len(tenants), "rate_per_queue_per_minute": args.rate, "window_seconds": round(end - start, 1),
        "queues_at_full_pace": at_full_pace,
        "share_of_pace": {"min": round(min(achieved), 3), "median": round(statistics.median(achieved), 3),
                          "max": round(max(achieved), 3)},
        "messages_per_second": round(sum(achieved) * expected / (end - start), 1),
        "consumer_cpu_cores": round((sum(cpu1) - sum(cpu0)) / (wall1 - wall0), 3),
        "consumer_cpu_system_share": round((cpu1[1] - cpu0[1]) / max(sum(cpu1) - sum(cpu0), 1e-9), 3),
        "machine_load_cores": round((machine_cpu() - machine0) / (wall1 - wall0), 2),
        "sandbox_cpu_cores": round((process_cpu(sandbox_pid) - sandbox0) / (wall1 - wall0), 2),
        "consumer_rss_mb": round(consumer.rss_mb(), 1),
        "db_connections_peak_consumer": peak_named, "db_connections_peak_others": peak_others,
        "db_connection_bound": args.concurrency + 2,
    }


def measure_recovery(args: argparse.Namespace, consumer: Process, start_consumer: Any, sandbox: Any,
                     tenants: list[dict[str, Any]], queue_ids: list[str]) -> tuple[dict[str, Any], Process]:
    from apps.billing.models import BillingContact

    killed_at = time.time()
    consumer.kill(signal.SIGKILL)
    log(f"SIGKILL consumer {consumer.pid}; restarting it")
    consumer = start_consumer()
    deadline = time.monotonic() + args.stale + args.periodic_interval + 60
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
    interrupted = BillingContact.objects.filter(queue_id__in=queue_ids, error_code="interrupted").count()
    return {
        "stale_threshold_seconds": args.stale, "periodic_interval_seconds": args.periodic_interval,
        "expected_bound_seconds": args.stale + args.periodic_interval,
        "queues_moving_again": len(moved), "queues": len(tenants),
        "seconds_until_moving": {"min": round(delays[0], 1), "median": round(statistics.median(delays), 1),
                                 "max": round(delays[-1], 1)} if delays else None,
        "contacts_interrupted": interrupted,
    }, consumer


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=200, help="throttled queues (one tenant/instance each)")
    parser.add_argument("--rate", type=int, default=20, help="messages per minute per queue")
    parser.add_argument("--concurrency", type=int, default=8, help="consumer worker slots")
    parser.add_argument("--max-queues", type=int, default=256, help="queues the consumer may hold")
    parser.add_argument("--warmup", type=float, default=30, help="seconds allowed for every queue to start")
    parser.add_argument("--duration", type=float, default=60, help="measuring window, seconds")
    parser.add_argument("--stale", type=int, default=20, help="stale threshold for the recovery part, seconds")
    parser.add_argument("--periodic-interval", type=float, default=5, help="periodic task cycle, seconds")
    parser.add_argument("--health-cache", type=int, help="tenants' health_cache_seconds (default: the model's, 5)")
    parser.add_argument("--redis-db", type=int, default=7)
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs (printed path)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base_db = os.environ.get("DATABASE_URL")
    if not base_db:
        log("DATABASE_URL is not set: run `source scripts/local_env.sh` first")
        return 2
    sys.path.insert(0, str(BACKEND))
    from apps.billing.tests.crash.broker import SecondBroker
    from apps.evolution_sandbox.testing import SandboxProcess

    db_url = with_path(base_db, "/billing_scale_bench")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"billing-scale-bench-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    broker = SecondBroker()
    sandbox_process = SandboxProcess(log_path=workdir / "sandbox.log")
    processes: list[Process] = []
    report: dict[str, Any] = {}
    try:
        log("starting a private RabbitMQ node and the sandbox; creating the database")
        broker.start()
        sandbox_process.start()
        create_database(db_url)
        env = {**os.environ, "DATABASE_URL": db_url, "RABBITMQ_URL": broker.url,
               "REDIS_URL": with_redis_db(os.environ.get("REDIS_URL", "redis://127.0.0.1:56379/0"), args.redis_db),
               "SECRET_KEY": "scale-bench-only", "DEBUG": "0", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO",
               "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1",
               "BILLING_STALE_CHECK_EVERY": str(args.periodic_interval), "EVOLUTION_RETRY_BACKOFF": "0"}
        env.pop("TEST_DATABASE_NAME", None)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        setup_django(env)
        from apps.common.redis_client import get_redis

        get_redis().flushdb()  # only our database number: the pace slots of earlier runs
        sandbox = sandbox_process.client()
        tenants = make_tenants(args.queues, sandbox, args.rate, args.stale, args.health_cache)
        contacts = int(args.rate * (args.warmup + args.duration + args.stale + args.periodic_interval + 90) / 60) + 5
        runs = 0

        def start_consumer() -> Process:
            nonlocal runs
            runs += 1
            handle = Process(["run_billing_consumer", "--concurrency", str(args.concurrency),
                              "--max-queues", str(args.max_queues)], env, workdir / f"consumer-{runs}.log")
            processes.append(handle)
            return handle

        consumer = start_consumer()
        processes.append(Process(["run_billing_periodic_tasks", "--interval", str(args.periodic_interval)], env,
                                 workdir / "periodic.log"))
        time.sleep(3)
        log(f"ingesting {args.queues} queues of {contacts} contacts")
        queue_ids = ingest(tenants, contacts)
        report["pace"] = measure_pace(args, consumer, sandbox_process.pid, sandbox, tenants, queue_ids)
        log(json.dumps(report["pace"]))
        if not args.skip_recovery:
            report["recovery"], consumer = measure_recovery(args, consumer, start_consumer, sandbox, tenants, queue_ids)
            log(json.dumps(report["recovery"]))
        report["config"] = {"concurrency": args.concurrency, "max_queues": args.max_queues, "rate": args.rate,
                            "health_cache_seconds": args.health_cache or 5}
        report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "platform": platform.platform()}
        report["finished_at"] = datetime.now(timezone.utc).isoformat()
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_PATH.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
    finally:
        for handle in processes:
            handle.stop()
        sandbox_process.stop()
        if "apps.billing.rabbitmq.billing_publisher" in sys.modules:  # our own wake-up calls' connection
            sys.modules["apps.billing.rabbitmq.billing_publisher"].get_publisher().close()
        broker.close()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may not be set up if we failed early
            pass
        drop_database(db_url)
        log(f"process logs in {workdir}" if args.keep_logs else "done")
        if not args.keep_logs:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
