#!/usr/bin/env python
"""Charges benchmark: the three targets of issue #16, on this machine.

* `POST /api/v1/billing/charges` with 10,000 charges answers in < 2 s (every row written),
  beside a bare `COPY` of the same rows into the charges table in the same run;
* materialising a day's steps for 100,000 open charges takes < 10 s (the cadence job, in
  process, through billing's real ingest service: queues, contacts, step runs, broker wake-ups);
* an Asaas webhook (`PAYMENT_RECEIVED`, each for another charge) is answered with p50 < 20 ms —
  measured twice: with the project's settings (under ASGI every request opens a new database
  connection) and with Django's psycopg connection pool enabled in a throw-away settings module.

Isolation is bench/ingest_bench.py's (its helpers are reused): a dedicated PostgreSQL database
(`charges_bench`, dropped at the end unless `--keep-db`), a temporary RabbitMQ vhost, its own
Redis database, a uvicorn web server subprocess with production settings, `requests` over
loopback. The 100,000 charges are due over 40 days (today-34 … today+5) on a −3/0/+1/+5/+15/+30
cadence, so a day has six steps of 2,500 charges each: 15,000 messages. `--worst-case` also
times 100,000 charges whose step is all due today (100,000 messages).

    source scripts/local_env.sh && .venv/bin/python bench/charges_bench.py

Prints a table and writes `bench/results/charges.json`. See docs/performance.md ("Charges").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_bench import (
    LocalVhost,
    bench_database_url,
    bench_environment,
    drop_database,
    ensure_database,
    git_commit,
    log,
    machine_info,
    percentile,
    setup_django,
    web_server,
    with_path,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = ROOT / "bench" / "results" / "charges.json"
VHOST = "charges_bench"
TARGET_UPSERT_S = 2.0
TARGET_MATERIALISE_S = 10.0
TARGET_WEBHOOK_P50_MS = 20.0
OFFSETS = (-3, 0, 1, 5, 15, 30)
ASAAS_TOKEN = "bench-asaas-token-" + "q" * 24


def charge_payload(i: int, run: str, due: str) -> dict[str, Any]:
    digits = f"9{7000_0000 + i:08d}"
    return {
        "external_id": f"{run}-{i}",
        "phone": f"({11 + i % 2}) {digits[:5]}-{digits[5:]}",
        "name": f"Devedor {i}",
        "amount": f"{100 + i % 900},{i % 100:02d}",
        "due_date": due,
        "debtor_external_id": f"PAC-{i}",
        "payment_link": f"https://pay.example.com/{run}/{i}",
    }


# --------------------------------------------------------------------------- upsert
def measure_upsert(base: str, raw_key: str, tenant: Any, size: int, repeat: int) -> dict[str, Any]:
    import requests

    due = (datetime.now(UTC).date() + timedelta(days=20)).isoformat()
    api, copy = [], []
    with requests.Session() as session:
        for rep in range(repeat + 1):  # the first round warms the server and is not counted
            run = f"u{rep}-{uuid.uuid4().hex[:6]}"
            body = json.dumps({"charges": [charge_payload(i, run, due) for i in range(size)]}).encode()
            start = time.perf_counter()
            response = session.post(
                f"{base}/api/v1/billing/charges",
                data=body,
                timeout=120,
                headers={"Content-Type": "application/json", "X-Billing-API-Key": raw_key},
            )
            elapsed = time.perf_counter() - start
            if response.status_code != 200 or response.json()["created"] != size:
                raise RuntimeError(f"upsert answered {response.status_code}: {response.text[:300]}")
            if rep:
                api.append(elapsed)
                copy.append(bare_copy(tenant, size, due))
    return {
        "charges": size,
        "repeat": repeat,
        "api_s": round(statistics.median(api), 4),
        "api_min_s": round(min(api), 4),
        "copy_s": round(statistics.median(copy), 4),
        "api_vs_copy": round(statistics.median(copy) / statistics.median(api), 3),
    }


def bare_copy(tenant: Any, size: int, due: str) -> float:
    """The same rows straight into the charges table with COPY (normalised values, no checks):
    the columns the API's upsert copies (charge_upsert.CLIENT_COLUMNS), plus what it sets itself."""
    from django.db import connection, transaction
    from psycopg.types.json import Jsonb

    from apps.charges.models import Charge
    from apps.charges.services.charge_upsert import CLIENT_COLUMNS

    run = f"c-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    fixed = {"tenant_id": tenant.pk, "status": "open", "payment_source": "", "payment_reference": ""}
    fixed |= {"created_at": now, "updated_at": now, "variables": Jsonb({}), "cadence_id": None}
    columns = [*fixed, *(name for name in CLIENT_COLUMNS if name not in fixed)]

    def row(i: int) -> tuple[Any, ...]:
        values = {
            "external_id": f"{run}-{i}",
            "phone": f"+55{11 + i % 2}9{7000_0000 + i:08d}",
            "name": f"Devedor {i}",
            "debtor_external_id": f"PAC-{i}",
            "debtor_key": f"id:PAC-{i}",
            "amount": f"{100 + i % 900}.{i % 100:02d}",
            "due_date": due,
            "payment_link": f"https://pay.example.com/{run}/{i}",
        }
        return tuple(fixed[name] if name in fixed else values.get(name, "") for name in columns)

    start = time.perf_counter()
    with (
        transaction.atomic(),
        connection.cursor() as wrapper,
        wrapper.cursor.copy(f"COPY {Charge._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy,
    ):
        for i in range(size):
            copy.write_row(row(i))
    return time.perf_counter() - start


# --------------------------------------------------------------------------- materialisation
def seed_charges(tenant: Any, total: int, due_for: Callable[[int], Any], run: str) -> None:
    from apps.charges.services.charge_upsert import upsert_charges

    for start in range(0, total, 10_000):
        batch = [charge_payload(i, run, due_for(i).isoformat()) for i in range(start, min(start + 10_000, total))]
        result = upsert_charges(tenant=tenant, charges=batch)
        if result.rejected:
            raise RuntimeError(f"seed rejected {len(result.rejected)} charges: {result.rejected[0]}")


def measure_materialise(tenant: Any, *, total: int, spread_days: int) -> dict[str, Any]:
    from apps.billing.models import BillingConfig
    from apps.billing.templating.date_calculator import today_in
    from apps.charges.models import ChargeStepRun
    from apps.charges.services.materialisation import materialise_due_steps

    today = today_in(tenant.timezone)
    first = today - timedelta(days=spread_days - 6) if spread_days > 1 else today
    log(f"seeding {total:,} open charges over {spread_days} day(s)")
    seed_charges(tenant, total, lambda i: first + timedelta(days=i % spread_days), f"m{spread_days}")
    BillingConfig.objects.filter(tenant=tenant).update(max_contacts_per_request=10_000)
    start = time.perf_counter()
    result = materialise_due_steps(tenant=tenant)
    elapsed = time.perf_counter() - start
    again_start = time.perf_counter()
    again = materialise_due_steps(tenant=tenant)
    again_s = time.perf_counter() - again_start
    if again.queued:
        raise RuntimeError("a second run queued again: not idempotent")
    runs = ChargeStepRun.objects.filter(tenant=tenant, scheduled_date=today, status="queued").count()
    return {
        "open_charges": total,
        "due_spread_days": spread_days,
        "messages_queued": result.queued,
        "queues": len(result.queues),
        "step_runs_written": runs,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(result.queued / elapsed, 1) if elapsed else None,
        "second_run_s": round(again_s, 3),
    }


def new_tenant(name: str) -> tuple[Any, str]:
    from apps.audit.services import Actor
    from apps.billing.models import BillingAPIKey
    from apps.billing.services.tenant_setup import ALWAYS_OPEN, setup_tenant
    from apps.charges.services.cadences import StepSpec, cadence_create

    slug = f"{name}-{uuid.uuid4().hex[:6]}"
    result = setup_tenant(
        name=slug,
        slug=slug,
        evolution_url="http://127.0.0.1:9",
        evolution_api_key="bench",
        instance_name=f"{slug}-main",
        business_hours=ALWAYS_OPEN,
        key_name="bench-setup",
    )
    _key, raw = BillingAPIKey.issue(tenant=result.tenant, name="bench", rate_limit_per_minute=100_000_000)
    cadence_create(
        tenant=result.tenant,
        name="Padrão",
        steps=[StepSpec(o) for o in OFFSETS],
        actor=Actor.command("charges_bench"),
        default=True,
    )
    return result.tenant, raw


# --------------------------------------------------------------------------- webhook
def measure_webhook(base: str, tenant: Any, count: int) -> dict[str, Any]:
    import requests

    from apps.charges.asaas_sandbox import asaas_event
    from apps.charges.services.asaas_setup import configure_asaas_webhook

    url = base + urlsplit(configure_asaas_webhook(tenant=tenant, token=ASAAS_TOKEN)).path
    due = datetime.now(UTC).date() + timedelta(days=3)
    seed_charges(tenant, count + 20, lambda i: due, "w")
    # Bytes, as Asaas' client would send them: http.client sends a str body in a second packet,
    # and Nagle + delayed ACK then add ~40 ms to every request (a client artefact, not ours).
    bodies = [
        json.dumps(asaas_event("PAYMENT_RECEIVED", external_reference=f"w-{i}", value="150.00", due_date=due)).encode()
        for i in range(count + 20)
    ]
    latencies, outcomes = [], []
    with requests.Session() as session:
        for i, body in enumerate(bodies):
            start = time.perf_counter()
            response = session.post(
                url,
                data=body,
                timeout=30,
                headers={"Content-Type": "application/json", "asaas-access-token": ASAAS_TOKEN},
            )
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:200]}")
            if i >= 20:  # the first 20 warm the server
                latencies.append(elapsed)
                outcomes.append(response.json()["outcome"])
    if set(outcomes) != {"applied"}:
        raise RuntimeError(f"unexpected outcomes {set(outcomes)}")
    return {
        "events": count,
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p90_ms": round(percentile(latencies, 90) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
    }


POOLED_SETTINGS = """from config.settings import *  # noqa: F401,F403 - the settings file this bench writes layers on production's

# Django's psycopg connection pool (Django >= 5.1): under ASGI a persistent connection is never
# reused (each request runs in a new thread context), so every request connects anew.
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 2, "max_size": 4}
"""


def pooled_environment(env: dict[str, str], folder: Path) -> dict[str, str]:
    """The same server settings plus a connection pool, from a throw-away settings module."""
    (folder / "charges_bench_pooled_settings.py").write_text(POOLED_SETTINGS)
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "charges_bench_pooled_settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH", "")])),
    }


# --------------------------------------------------------------------------- report
def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    upsert, day, hook = report["upsert"], report["materialise"], report["webhook"]
    return {
        "upsert_10k_under_2s": {
            "target_s": TARGET_UPSERT_S,
            "measured_s": upsert["api_s"],
            "result": "PASS" if upsert["api_s"] < TARGET_UPSERT_S else "FAIL",
        },
        "materialise_100k_under_10s": {
            "target_s": TARGET_MATERIALISE_S,
            "measured_s": day["seconds"],
            "result": "PASS" if day["seconds"] < TARGET_MATERIALISE_S else "FAIL",
        },
        "webhook_p50_under_20ms": {
            "target_ms": TARGET_WEBHOOK_P50_MS,
            "measured_ms": hook["p50_ms"],
            "result": "PASS" if hook["p50_ms"] < TARGET_WEBHOOK_P50_MS else "FAIL",
        },
        "webhook_p50_under_20ms_pooled": {
            "target_ms": TARGET_WEBHOOK_P50_MS,
            "measured_ms": report["webhook_pooled"]["p50_ms"],
            "result": "PASS" if report["webhook_pooled"]["p50_ms"] < TARGET_WEBHOOK_P50_MS else "FAIL",
        },
    }


def print_report(report: dict[str, Any]) -> None:
    m, u, d, w = report["machine"], report["upsert"], report["materialise"], report["webhook"]
    print()
    print(
        f"Charges benchmark — {m['cpus']} CPU(s) {m['cpu_model']}, uvicorn 1 process, commit {report['commit']}, "
        f"load average {report['load_average']['before'][0]} → {report['load_average']['after'][0]}"
    )
    print()
    print(f"{'measure':<58} | {'result':>22}")
    print("-" * 84)
    print(
        f"{'upsert 10,000 charges, POST wall (median of ' + str(u['repeat']) + ')':<58} | {u['api_s'] * 1000:>19.1f} ms"
    )
    print(f"{'bare COPY of the same 10,000 rows':<58} | {u['copy_s'] * 1000:>19.1f} ms")
    print(f"{'API rate / COPY rate':<58} | {u['api_vs_copy']:>21.2f}x")
    label = f"materialise: {d['open_charges']:,} open charges, {d['messages_queued']:,} messages, {d['queues']} queues"
    print(f"{label:<58} | {d['seconds'] * 1000:>19.1f} ms")
    print(f"{'materialise again (idempotent, nothing new)':<58} | {d['second_run_s'] * 1000:>19.1f} ms")
    if report.get("worst_case"):
        x = report["worst_case"]
        label = f"worst case: {x['open_charges']:,} charges all due today ({x['messages_queued']:,} msgs)"
        print(f"{label:<58} | {x['seconds'] * 1000:>19.1f} ms")
    print(
        f"{'Asaas webhook PAYMENT_RECEIVED, ' + str(w['events']) + ' events: p50 / p90 / p99':<58} | "
        f"{w['p50_ms']:>5.1f} / {w['p90_ms']:>5.1f} / {w['p99_ms']:>5.1f} ms"
    )
    if report.get("webhook_pooled"):
        p = report["webhook_pooled"]
        print(
            f"{'  the same with a psycopg connection pool in the server':<58} | "
            f"{p['p50_ms']:>5.1f} / {p['p90_ms']:>5.1f} / {p['p99_ms']:>5.1f} ms"
        )
    print()
    for name, verdict in report["targets"].items():
        measured = verdict.get("measured_s", verdict.get("measured_ms"))
        print(f"target {name}: {measured} → {verdict['result']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--charges", type=int, default=100_000, help="Open charges for the materialisation run.")
    parser.add_argument("--repeat", type=int, default=3, help="Upsert runs (the median is reported).")
    parser.add_argument("--events", type=int, default=300, help="Asaas events for the latency run.")
    parser.add_argument("--worst-case", action="store_true", help="Also time every charge due for a step today.")
    parser.add_argument("--db-name", default="charges_bench")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
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
        vhost = LocalVhost(VHOST)
        vhost.create()
        cleanups.append(vhost.delete)
        rabbitmq_url = with_path(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:55672/"), f"/{VHOST}")
        log(f"{'created' if ensure_database(db_url) else 'reusing'} database {args.db_name!r}")
        if not args.keep_db:
            cleanups.append(lambda: drop_database(db_url))
        env = bench_environment(db_url=db_url, redis_url=redis_url, rabbitmq_url=rabbitmq_url, web_workers=1)
        setup_django(env)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0, interactive=False)
        cleanups.insert(0, connection.close)
        load_before = os.getloadavg()
        report: dict[str, Any] = {
            "benchmark": "charges",
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "machine": machine_info(),
        }
        with web_server(env, "uvicorn", 1) as base:
            tenant, raw_key = new_tenant("upsert")
            log("upsert: 10,000 charges per POST")
            report["upsert"] = measure_upsert(base, raw_key, tenant, 10_000, args.repeat)
            log("webhook latency")
            report["webhook"] = measure_webhook(base, new_tenant("webhook")[0], args.events)
        with (
            tempfile.TemporaryDirectory() as folder,
            web_server(pooled_environment(env, Path(folder)), "uvicorn", 1) as base,
        ):
            log("webhook latency, pooled connections")
            report["webhook_pooled"] = measure_webhook(base, new_tenant("pooled")[0], args.events)
        log("materialisation")
        report["materialise"] = measure_materialise(new_tenant("day")[0], total=args.charges, spread_days=40)
        if args.worst_case:
            report["worst_case"] = measure_materialise(new_tenant("worst")[0], total=args.charges, spread_days=1)
        report["load_average"] = {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        }
        report["targets"] = verdicts(report)
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
