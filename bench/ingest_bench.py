#!/usr/bin/env python
"""Ingest benchmark: POST /api/v1/billing/send/notification through a real web server.

Why a script and not a test: it measures a machine, not a behaviour, and takes about a minute.
It answers the two targets of issue #5 for the public API:

* 10,000 contacts are accepted (HTTP 202, every row written) in under 2 s;
* the API's rate is at least 0.5x a bare `bulk_create` of the same rows.

Everything it touches is its own, so it never disturbs dev or test data:

* PostgreSQL: a dedicated database (`billing_bench`), created and migrated here, dropped at the
  end (`--keep-db` keeps it; a kept one is reused by the next run);
* RabbitMQ: a dedicated vhost (`billing_bench`), created with `rabbitmqctl` on the local broker
  that `scripts/services.sh` runs and deleted at the end, so the wake-up calls ingest publishes
  never reach a dev or test consumer (`--rabbitmq-url` points at another broker instead);
* Redis: its own database number (`--redis-db`), so its throttle counters are not shared.

The web server is uvicorn (`config.asgi:application`, one process, as `scripts/run.sh` runs it;
`--server gunicorn` runs the production shape, uvicorn workers under gunicorn) in a subprocess
with production settings (DEBUG off: with DEBUG on Django keeps every SQL statement in memory)
and throttles raised so they do not distort the figures. The client is `requests` over real
HTTP on loopback.

    source scripts/local_env.sh && .venv/bin/python bench/ingest_bench.py

Prints a table and writes `bench/results/ingest.json` (git-ignored). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend"
RESULTS_PATH = ROOT / "bench" / "results" / "ingest.json"

TARGET_SECONDS_10K = 2.0  # issue #5: 10,000 contacts accepted in under 2 s
TARGET_RATIO_VS_BULK = 0.5  # issue #5: at least half the bare bulk_create rate
TARGET_SIZE = 10_000
BENCH_SECRET_KEY = "bench-only-secret-key-not-for-any-real-deployment"
VHOST = "billing_bench"
NOTICE = "A clínica estará fechada no feriado de 20/11; reagende pelo link."

Row = tuple[str, str, dict[str, Any]]  # (E.164 phone, name, variables): what ingest stores per contact


# --------------------------------------------------------------------------- helpers
def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 400 samples is the 396th)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-pct * len(ordered) // 100))))
    return ordered[rank - 1]


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_commit() -> str | None:
    """Read-only: which code was measured."""
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


# --------------------------------------------------------------------------- payloads
def contact_payload(i: int) -> dict[str, Any]:
    """A valid São Paulo/Rio mobile in one of the formats ERPs really send (so the normaliser
    does real work), a name and the variable the default notification template needs."""
    subscriber = 7000_0000 + i  # 8 digits after the 9: distinct for i < 30,000,000
    area = "11" if i % 2 == 0 else "21"
    digits = f"9{subscriber:08d}"
    style = i % 4
    if style == 0:
        phone = f"+55 {area} {digits[:5]}-{digits[5:]}"
    elif style == 1:
        phone = f"({area}) {digits[:5]}-{digits[5:]}"
    elif style == 2:
        phone = f"55{area}{digits}"
    else:
        phone = f"{area}{digits}"
    return {"phone": phone, "name": f"Cliente {i}", "external_id": f"PAC-{i}", "variables": {"message": NOTICE}}


def stored_row(i: int) -> Row:
    """What ingest stores for `contact_payload(i)` (used by the bulk_create and COPY baselines)."""
    subscriber = 7000_0000 + i
    area = "11" if i % 2 == 0 else "21"
    return f"+55{area}9{subscriber:08d}", f"Cliente {i}", {"message": NOTICE}


def request_body(size: int, external_id: str) -> bytes:
    return json.dumps(
        {"external_id": external_id, "contacts": [contact_payload(i) for i in range(size)]}, ensure_ascii=False
    ).encode()


# --------------------------------------------------------------------------- isolation
def bench_database_url(base_url: str, name: str) -> str:
    return with_path(base_url, f"/{name}")


def ensure_database(db_url: str) -> bool:
    """Create the bench database unless it exists; True if created."""
    import psycopg

    name = urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(with_path(db_url, "/postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        conn.execute(f'CREATE DATABASE "{name}"')
        return True


def drop_database(db_url: str) -> None:
    import psycopg

    name = urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(with_path(db_url, "/postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class LocalVhost:
    """A RabbitMQ vhost on the broker `scripts/services.sh` runs, managed with its rabbitmqctl
    (same node name, cookie under .local/rabbitmq, own epmd port)."""

    def __init__(self, name: str) -> None:
        self.name = name
        # The services' folder: BILLING_LOCAL_DIR (scripts/local_env.sh), else this checkout's .local.
        candidates = [Path(os.environ["BILLING_LOCAL_DIR"])] if os.environ.get("BILLING_LOCAL_DIR") else []
        rmq_dir = next(
            (d / "rabbitmq" for d in [*candidates, ROOT / ".local"] if (d / "rabbitmq").is_dir()),
            ROOT / ".local" / "rabbitmq",
        )
        env = ["env", f"HOME={rmq_dir}", f"ERL_EPMD_PORT={os.environ.get('BILLING_EPMD_PORT', '54369')}"]
        ctl = ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-q", "-n", "billing@localhost"]
        as_rabbitmq = os.geteuid() == 0 and _user_exists("rabbitmq") and shutil.which("runuser")
        self.command = (["runuser", "-u", "rabbitmq", "--"] if as_rabbitmq else []) + env + ctl

    def _ctl(self, *args: str) -> str:
        done = subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {(done.stderr or done.stdout).strip()[:300]}")
        return done.stdout

    def create(self) -> None:
        if self.name not in self._ctl("list_vhosts").split():
            self._ctl("add_vhost", self.name)
        self._ctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def delete(self) -> None:
        self._ctl("delete_vhost", self.name)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def bench_environment(*, db_url: str, redis_url: str, rabbitmq_url: str, web_workers: int) -> dict[str, str]:
    """Production-like settings for both this process and the server, pointed at bench resources."""
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "RABBITMQ_URL": rabbitmq_url,
        "CACHE_KEY_PREFIX": "billing-bench",
        "CHANNELS_PREFIX": "billing-bench-asgi",
        "DEBUG": "0",
        "SECRET_KEY": BENCH_SECRET_KEY,
        "SECURE_SSL_REDIRECT": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "BILLING_IP_RATE_LIMIT_PER_MINUTE": "100000000",
        # the sandbox listens on loopback: the provider address guard must allow it
        "EVOLUTION_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "WEB_CONCURRENCY": str(web_workers),
    }


def isolated_django(
    *,
    db_name: str,
    vhost_name: str,
    redis_db: int,
    keep_db: bool,
    web_workers: int,
    cleanups: list[Callable[[], None]],
    **extra_env: str,
) -> dict[str, str]:
    """This machine's services, isolated for a benchmark: its own database (created unless it
    exists, migrated), RabbitMQ vhost and Redis database; Django set up in this process with
    them. What to undo is appended to `cleanups` (run in order); the environment is returned for
    the servers the benchmark starts."""
    base_db = os.environ.get("DATABASE_URL")
    if not base_db:
        raise RuntimeError("DATABASE_URL is not set: run `source scripts/local_env.sh` first")
    db_url = bench_database_url(base_db, db_name)
    vhost = LocalVhost(vhost_name)
    vhost.create()
    cleanups.append(vhost.delete)
    rabbitmq_url = with_path(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:55672/"), f"/{vhost_name}")
    ensure_database(db_url)
    if not keep_db:
        cleanups.append(lambda: drop_database(db_url))
    redis_url = with_path(os.environ.get("REDIS_URL", "redis://127.0.0.1:56379/0"), f"/{redis_db}")
    env = {
        **bench_environment(db_url=db_url, redis_url=redis_url, rabbitmq_url=rabbitmq_url, web_workers=web_workers),
        **extra_env,
    }
    setup_django(env)
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    cleanups.insert(0, connection.close)  # before the database is dropped
    return env


# --------------------------------------------------------------------------- web server
def server_command(server: str, port: int, workers: int) -> list[str]:
    """`uvicorn`: what `scripts/run.sh` runs. `gunicorn`: the production shape (uvicorn workers
    under gunicorn, as in the Procfile). Plain `uvicorn --workers N` (N > 1) is not offered: it
    binds its socket without TCP_NODELAY, so every small response waits ~40 ms for a delayed
    ACK, a stall production (gunicorn sets TCP_NODELAY) never sees."""
    if server == "gunicorn":
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "config.asgi:application",
            "--chdir",
            str(BACKEND),
            "-k",
            "uvicorn.workers.UvicornWorker",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--app-dir",
        str(BACKEND),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


@contextmanager
def web_server(env: dict[str, str], server: str, workers: int) -> Iterator[str]:
    """The web server on a free loopback port, in its own process group (stopped by that group's id)."""
    import requests

    port = free_port()
    log_file = tempfile.NamedTemporaryFile(prefix=f"ingest-bench-{server}-", suffix=".log", delete=False)
    command = server_command(server, port, workers)
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    clean_exit = False
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{server} exited ({process.returncode}); see {log_file.name}")
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server} did not answer within 60 s; see {log_file.name}")
            time.sleep(0.2)
        log(f"web server up: {base} ({describe_server(server, workers)}, log {log_file.name})")
        yield base
        clean_exit = True
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        log_file.close()
        if clean_exit:  # the log only matters when something went wrong
            Path(log_file.name).unlink(missing_ok=True)


def describe_server(server: str, workers: int) -> str:
    return f"gunicorn + {workers} uvicorn worker(s)" if server == "gunicorn" else "uvicorn, 1 process"


# --------------------------------------------------------------------------- Django side
def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(BACKEND))
    import django

    django.setup()


def make_tenant(max_size: int) -> dict[str, Any]:
    """A tenant like ops would create it (always open), and a key whose limit never bites."""
    from apps.billing.models import BillingAPIKey, BillingTemplate
    from apps.billing.services.tenant_setup import ALWAYS_OPEN, setup_tenant

    slug = f"bench-{uuid.uuid4().hex[:8]}"
    result = setup_tenant(
        name=f"Bench {slug}",
        slug=slug,
        evolution_url="http://127.0.0.1:9",
        evolution_api_key="bench-not-used",
        instance_name=f"{slug}-main",
        business_hours=ALWAYS_OPEN,
        key_name="bench-setup",
    )
    config = result.config
    if config.max_contacts_per_request < max_size:
        config.max_contacts_per_request = max_size
        config.save(update_fields=["max_contacts_per_request"])
    _key, raw_key = BillingAPIKey.issue(tenant=result.tenant, name="bench", rate_limit_per_minute=100_000_000)
    template = BillingTemplate.objects.get(tenant=result.tenant, template_type="notification", is_default=True)
    return {"tenant": result.tenant, "instance": result.instance, "template": template, "raw_key": raw_key}


def _parents(ctx: dict[str, Any], size: int) -> tuple[Any, Any, Any]:
    """Campaign, BillingCampaign and BillingQueue for a baseline insert (not timed)."""
    from apps.billing.models import BillingCampaign, BillingQueue
    from apps.campaigns.models import Campaign

    tenant = ctx["tenant"]
    campaign = Campaign.objects.create(
        tenant=tenant, name="bench baseline", source=Campaign.Source.BILLING, total_contacts=size
    )
    billing_campaign = BillingCampaign.objects.create(
        tenant=tenant,
        campaign=campaign,
        template=ctx["template"],
        template_type="notification",
        external_id=f"baseline-{uuid.uuid4().hex}",
        instance=ctx["instance"],
    )
    queue = BillingQueue.objects.create(
        tenant=tenant,
        billing_campaign=billing_campaign,
        template_type="notification",
        instance=ctx["instance"],
        priority=1,
        total_contacts=size,
    )
    return campaign, billing_campaign, queue


def baseline_bulk_create(ctx: dict[str, Any], rows: list[Row]) -> float:
    """The same rows as ingest, written the plainest ORM way: two bulk_create calls, one transaction."""
    from django.db import transaction

    from apps.billing.models import BillingContact
    from apps.campaigns.models import CampaignContact

    campaign, billing_campaign, queue = _parents(ctx, len(rows))
    tenant, variations = ctx["tenant"], ctx["variations"]
    start = time.perf_counter()
    with transaction.atomic():
        ccs = CampaignContact.objects.bulk_create(
            [CampaignContact(tenant=tenant, campaign=campaign, phone=phone, name=name) for phone, name, _ in rows],
            batch_size=2000,
        )
        BillingContact.objects.bulk_create(
            [
                BillingContact(
                    tenant=tenant,
                    billing_campaign=billing_campaign,
                    queue=queue,
                    campaign_contact=cc,
                    variation=variations[i % len(variations)],
                    phone=phone,
                    name=name,
                    external_id=f"PAC-{i}",
                    variables=variables,
                )
                for i, ((phone, name, variables), cc) in enumerate(zip(rows, ccs, strict=True))
            ],
            batch_size=2000,
        )
    elapsed = time.perf_counter() - start
    _check_written(queue, len(rows))
    return elapsed


def baseline_copy(ctx: dict[str, Any], rows: list[Row]) -> float:
    """The same rows through psycopg 3 COPY: ids for CampaignContact are drawn from its sequence
    first (COPY returns nothing), every other column is filled the way the model would."""
    from django.db import connection, transaction
    from psycopg.types.json import Jsonb

    from apps.billing.models import BillingContact
    from apps.campaigns.models import CampaignContact

    campaign, billing_campaign, queue = _parents(ctx, len(rows))
    tenant, variations = ctx["tenant"], ctx["variations"]
    cc_table = CampaignContact._meta.db_table
    bc_table = BillingContact._meta.db_table
    start = time.perf_counter()
    with transaction.atomic():
        cc_prototype = CampaignContact(tenant=tenant, campaign=campaign)
        cc_columns, cc_constant = _copy_columns(CampaignContact, cc_prototype, varying=("id", "phone", "name"))
        bc_prototype = BillingContact(tenant=tenant, billing_campaign=billing_campaign, queue=queue)
        bc_varying = ("campaign_contact_id", "variation_id", "phone", "name", "external_id", "variables")
        bc_columns, bc_constant = _copy_columns(BillingContact, bc_prototype, varying=bc_varying, skip=("id",))
        with connection.cursor() as wrapper:
            cursor = wrapper.cursor
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [cc_table, len(rows)]
            )
            ids = [row[0] for row in cursor.fetchall()]
            with cursor.copy(f"COPY {cc_table} ({', '.join(cc_columns)}) FROM STDIN") as copy:
                for pk, (phone, name, _) in zip(ids, rows, strict=True):
                    copy.write_row(_fill(cc_columns, cc_constant, {"id": pk, "phone": phone, "name": name}))
            with cursor.copy(f"COPY {bc_table} ({', '.join(bc_columns)}) FROM STDIN") as copy:
                for i, (pk, (phone, name, variables)) in enumerate(zip(ids, rows, strict=True)):
                    copy.write_row(
                        _fill(
                            bc_columns,
                            bc_constant,
                            {
                                "campaign_contact_id": pk,
                                "variation_id": variations[i % len(variations)].pk,
                                "phone": phone,
                                "name": name,
                                "external_id": f"PAC-{i}",
                                "variables": Jsonb(variables),
                            },
                        )
                    )
    elapsed = time.perf_counter() - start
    _check_written(queue, len(rows))
    return elapsed


def _copy_columns(
    model: type, prototype: Any, *, varying: tuple[str, ...], skip: tuple[str, ...] = ()
) -> tuple[list[str], dict[str, Any]]:
    """Column list and the per-batch constant values (defaults, auto_now) of `model`."""
    from django.db import connection

    columns, constant = [], {}
    for field in model._meta.concrete_fields:
        if field.column in skip:
            continue
        columns.append(field.column)
        if field.column not in varying:
            constant[field.column] = field.get_db_prep_save(field.pre_save(prototype, True), connection)
    return columns, constant


def _fill(columns: list[str], constant: dict[str, Any], values: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(values[c] if c in values else constant[c] for c in columns)


def _check_written(queue: Any, expected: int) -> None:
    from apps.billing.models import BillingContact

    written = BillingContact.objects.filter(queue=queue).count()
    if written != expected:
        raise RuntimeError(f"baseline wrote {written} contacts, expected {expected}")


# --------------------------------------------------------------------------- HTTP side
def post_once(session: Any, url: str, raw_key: str, body: bytes, expected: int) -> float:
    start = time.perf_counter()
    response = session.post(
        url, data=body, headers={"Content-Type": "application/json", "X-Billing-API-Key": raw_key}, timeout=120
    )
    elapsed = time.perf_counter() - start
    if response.status_code != 202:
        raise RuntimeError(f"POST answered {response.status_code}: {response.text[:300]}")
    accepted = response.json()["accepted"]
    if accepted != expected:
        raise RuntimeError(f"POST accepted {accepted} contacts, expected {expected}")
    return elapsed


def concurrent_latency(url: str, raw_key: str, *, clients: int, total: int) -> dict[str, Any]:
    """`total` one-contact requests from `clients` threads, each with its own keep-alive session."""
    import requests

    run = uuid.uuid4().hex[:8]
    bodies = [request_body(1, f"lat-{run}-{n}") for n in range(total)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    next_index = iter(range(total))
    barrier = threading.Barrier(clients)

    def client() -> None:
        with requests.Session() as session:
            barrier.wait()
            while True:
                with lock:
                    n = next(next_index, None)
                if n is None:
                    return
                try:
                    elapsed = post_once(session, url, raw_key, bodies[n], 1)
                except Exception as exc:
                    with lock:
                        errors.append(str(exc)[:200])
                    continue
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if not latencies:
        raise RuntimeError(f"every concurrent request failed: {errors[:3]}")
    return {
        "clients": clients,
        "requests": total,
        "ok": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:3],
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p90_ms": round(percentile(latencies, 90) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


# --------------------------------------------------------------------------- the run
def measure_sizes(ctx: dict[str, Any], base: str, sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    import requests

    url = f"{base}/api/v1/billing/send/notification"
    run = uuid.uuid4().hex[:8]
    results = []
    with requests.Session() as session:
        # Warm every worker: imports, DB connection, broker connection, first-request caches.
        for n in range(8):
            post_once(session, url, ctx["raw_key"], request_body(1, f"warm-{run}-{n}"), 1)
        post_once(session, url, ctx["raw_key"], request_body(1000, f"warm-{run}-big"), 1000)
        for size in sizes:
            rows = [stored_row(i) for i in range(size)]
            api, bulk, copy = [], [], []
            body_bytes = 0
            for rep in range(repeat):
                body = request_body(size, f"size-{run}-{size}-{rep}")
                body_bytes = len(body)
                api.append(post_once(session, url, ctx["raw_key"], body, size))
                bulk.append(baseline_bulk_create(ctx, rows))
                copy.append(baseline_copy(ctx, rows))
            api_s, bulk_s, copy_s = (statistics.median(v) for v in (api, bulk, copy))
            results.append(
                {
                    "contacts": size,
                    "body_bytes": body_bytes,
                    "repeat": repeat,
                    "api_s": round(api_s, 4),
                    "api_min_s": round(min(api), 4),
                    "api_max_s": round(max(api), 4),
                    "api_contacts_per_s": round(size / api_s, 1),
                    "bulk_create_s": round(bulk_s, 4),
                    "bulk_create_contacts_per_s": round(size / bulk_s, 1),
                    "copy_s": round(copy_s, 4),
                    "copy_contacts_per_s": round(size / copy_s, 1),
                    "api_vs_bulk_create": round(bulk_s / api_s, 3),
                    "api_vs_copy": round(copy_s / api_s, 3),
                }
            )
            log(
                f"{size:>6} contacts: api {api_s * 1000:.1f} ms, bulk_create {bulk_s * 1000:.1f} ms, "
                f"copy {copy_s * 1000:.1f} ms"
            )
    return results


def verdict(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    row = next((r for r in sizes if r["contacts"] == TARGET_SIZE), None)
    if row is None:
        return {"measured": False}
    fast = row["api_s"] < TARGET_SECONDS_10K
    ratio = row["api_vs_bulk_create"] >= TARGET_RATIO_VS_BULK
    return {
        "measured": True,
        "accept_10k_under_2s": {
            "target_s": TARGET_SECONDS_10K,
            "measured_s": row["api_s"],
            "result": "PASS" if fast else "FAIL",
        },
        "rate_vs_bulk_create": {
            "target": TARGET_RATIO_VS_BULK,
            "measured": row["api_vs_bulk_create"],
            "result": "PASS" if ratio else "FAIL",
        },
    }


def print_report(report: dict[str, Any]) -> None:
    print()
    print(
        f"Ingest benchmark — {report['machine']['cpus']} CPU(s) {report['machine']['cpu_model']}, "
        f"{report['server']['description']}, commit {report['commit']}, "
        f"load average {report['load_average']['before'][0]} → {report['load_average']['after'][0]}"
    )
    print()
    header = (
        f"{'contacts':>8} | {'body':>8} | {'API wall':>9} | {'API c/s':>9} | {'bulk_create':>11} | "
        f"{'bulk c/s':>9} | {'COPY':>8} | {'COPY c/s':>9} | {'API/bulk':>8} | {'API/COPY':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in report["sizes"]:
        print(
            f"{r['contacts']:>8,} | {r['body_bytes'] / 1024:>6.0f}KB | {r['api_s'] * 1000:>7.1f}ms | "
            f"{r['api_contacts_per_s']:>9,.0f} | {r['bulk_create_s'] * 1000:>9.1f}ms | "
            f"{r['bulk_create_contacts_per_s']:>9,.0f} | {r['copy_s'] * 1000:>6.1f}ms | "
            f"{r['copy_contacts_per_s']:>9,.0f} | {r['api_vs_bulk_create']:>7.2f}x | {r['api_vs_copy']:>7.2f}x"
        )
    c = report["concurrency"]
    print()
    print(
        f"1-contact requests, {c['clients']} concurrent clients, {c['requests']} requests: "
        f"p50 {c['p50_ms']} ms, p90 {c['p90_ms']} ms, p99 {c['p99_ms']} ms, max {c['max_ms']} ms, "
        f"{c['requests_per_s']} req/s, {c['errors']} error(s)"
    )
    v = report["targets"]
    if v.get("measured"):
        a, b = v["accept_10k_under_2s"], v["rate_vs_bulk_create"]
        print()
        print(f"target: 10,000 contacts accepted in < {a['target_s']} s .... {a['measured_s']:.3f} s  {a['result']}")
        print(f"target: API rate >= {b['target']}x bare bulk_create .... {b['measured']:.2f}x   {b['result']}")
    load = max(report["load_average"]["before"][0], report["load_average"]["after"][0])
    if load > (report["machine"]["cpus"] or 1) * 1.5:
        print()
        print(
            f"WARNING: load average reached {load} on {report['machine']['cpus']} CPU(s): other work competed "
            "for the machine, so these figures are pessimistic; run again when it is quiet."
        )
    print()
    print(
        f"(c/s = contacts per second, each contact is one CampaignContact + one BillingContact row; "
        f"API/bulk = API rate / bulk_create rate; median of {report['repeat']} runs)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,100,1000,10000", help="Contacts per request (comma-separated).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per size; the median is reported.")
    parser.add_argument("--clients", type=int, default=20, help="Concurrent clients for the latency run.")
    parser.add_argument("--requests", type=int, default=400, help="Requests in the latency run.")
    parser.add_argument(
        "--server",
        choices=["uvicorn", "gunicorn"],
        default="uvicorn",
        help="uvicorn: one process, as scripts/run.sh; gunicorn: uvicorn workers, as production.",
    )
    parser.add_argument(
        "--web-workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", 2)),
        help="Worker processes with --server gunicorn (production runs 2).",
    )
    parser.add_argument("--db-name", default="billing_bench", help="Dedicated database (created if missing).")
    parser.add_argument("--keep-db", action="store_true", help="Keep the database (the next run reuses it).")
    parser.add_argument("--redis-db", type=int, default=15, help="Redis database number for the bench.")
    parser.add_argument("--rabbitmq-url", help="Broker to publish to (default: a temporary local vhost).")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    base_db = os.environ.get("DATABASE_URL")
    if not base_db:
        log("DATABASE_URL is not set: run `source scripts/local_env.sh` first")
        return 2
    db_url = bench_database_url(base_db, args.db_name)
    if urlsplit(db_url).path == urlsplit(base_db).path:
        log("refusing to run on the dev database; choose another --db-name")
        return 2
    redis_url = with_path(os.environ.get("REDIS_URL", "redis://127.0.0.1:56379/0"), f"/{args.redis_db}")

    cleanups: list[Callable[[], None]] = []
    try:
        if args.rabbitmq_url:
            rabbitmq_url = args.rabbitmq_url
        else:
            vhost = LocalVhost(VHOST)
            log(f"creating RabbitMQ vhost {VHOST!r} on the local broker")
            vhost.create()
            cleanups.append(vhost.delete)
            rabbitmq_url = with_path(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:55672/"), f"/{VHOST}")

        created = ensure_database(db_url)
        log(f"{'created' if created else 'reusing'} database {args.db_name!r}")
        if not args.keep_db:
            cleanups.append(lambda: drop_database(db_url))
        workers = args.web_workers if args.server == "gunicorn" else 1
        env = bench_environment(db_url=db_url, redis_url=redis_url, rabbitmq_url=rabbitmq_url, web_workers=workers)
        setup_django(env)
        from django.core.management import call_command
        from django.db import connection

        log("migrating")
        call_command("migrate", verbosity=0, interactive=False)
        cleanups.insert(0, connection.close)  # before the database is dropped
        ctx = make_tenant(max(sizes))
        ctx["variations"] = list(ctx["template"].active_variations())
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            pg_version = cursor.fetchone()[0]

        load_before = os.getloadavg()
        with web_server(env, args.server, workers) as base:
            size_results = measure_sizes(ctx, base, sizes, args.repeat)
            log(f"latency: {args.requests} one-contact requests from {args.clients} clients")
            # Untimed round first: every worker process gets its connections and caches warm.
            concurrent_latency(
                f"{base}/api/v1/billing/send/notification", ctx["raw_key"], clients=args.clients, total=args.clients * 2
            )
            concurrency = concurrent_latency(
                f"{base}/api/v1/billing/send/notification", ctx["raw_key"], clients=args.clients, total=args.requests
            )

        report = {
            "benchmark": "ingest",
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "machine": machine_info(),
            "postgresql": pg_version,
            # The machine may be shared: a high load average means other work competed for the CPUs.
            "load_average": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
            "server": {
                "kind": args.server,
                "app": "config.asgi:application",
                "workers": workers,
                "description": describe_server(args.server, workers),
                "debug": False,
            },
            "endpoint": "POST /api/v1/billing/send/notification",
            "repeat": args.repeat,
            "sizes": size_results,
            "concurrency": concurrency,
            "targets": verdict(size_results),
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print_report(report)
        log(f"wrote {args.output}")
        return 0
    finally:
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:
                log(f"cleanup failed: {exc}")


if __name__ == "__main__":
    sys.exit(main())
