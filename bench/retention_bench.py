#!/usr/bin/env python
"""Retention benchmark: the retention job on 1,000,000 old messages while ingest runs.

Issue 19 asks that the job remove texts from a million old messages "without blocking ingest,
measured beside an ingest benchmark in the same run". So, in one isolated environment (its own
database, RabbitMQ vhost and Redis database: `ingest_bench.isolated_django`):

1. seed N old billing contacts (default 1,000,000: delivered, created 200 days ago, each with a
   rendered message and variables), in one SQL statement per 100,000 rows;
2. ingest alone: one-contact and 1,000-contact POSTs to /api/v1/billing/send/notification
   through a real web server (uvicorn), from concurrent clients: the baseline latencies;
3. the same ingest load again while `manage.py run_privacy_retention --once` clears the N rows
   in another process: the latencies under the job, the job's duration and rate;
4. checks: every old row was cleared (and only its texts), ingest answered every request, its
   p99 and max stay within a bound of the baseline.

    source scripts/local_env.sh && .venv/bin/python bench/retention_bench.py

Prints a table and writes `bench/results/retention.json` (git-ignored). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_bench as ib

RESULTS_PATH = ib.ROOT / "bench" / "results" / "retention.json"
SEED_CHUNK = 100_000
RENDERED = (
    "Olá, Maria! Consta em aberto a fatura de *R$ 150,00*, com vencimento em *01/02/2026*. "
    "Para regularizar, acesse: https://pagamento.example/fatura/12345"
)
# Ingest under the job may slow by this much before the run says "blocked" (2 shared cores).
P99_FACTOR, MAX_BOUND_MS = 3.0, 2_000.0


def seed_old_contacts(ctx: dict[str, Any], count: int) -> float:
    """`count` delivered contacts created 200 days ago (one queue), through the same INSERT
    builder ingest uses (every column gets its model default unless named)."""
    from django.db import connection

    from apps.billing.models import BillingContact
    from apps.billing.services.ingest_statement import _insert
    from apps.campaigns.models import CampaignContact

    campaign, billing_campaign, queue = ib._parents(ctx, count)
    start = time.perf_counter()
    for offset in range(0, count, SEED_CHUNK):
        size = min(SEED_CHUNK, count - offset)
        campaign_contact = _insert(
            CampaignContact,
            {
                "tenant": "%(tenant)s",
                "campaign": "%(campaign)s",
                "phone": "g.phone",
                "name": "'Maria Silva'",
                "created_at": "g.at",
                "id": "nextval(pg_get_serial_sequence('campaigns_campaigncontact', 'id'))",
            },
            source="g",
        )
        contact = _insert(
            BillingContact,
            {
                "tenant": "%(tenant)s",
                "billing_campaign": "%(billing_campaign)s",
                "queue": "%(queue)s",
                "campaign_contact": "cc.id",
                "phone": "cc.phone",
                "name": "'Maria Silva'",
                "status": "'delivered'",
                "variables": """'{"valor": "R$ 150,00", "link": "https://pagamento.example/fatura/12345"}'::jsonb""",
                "rendered_message": "%(rendered)s",
                "attempts": "1",
                "created_at": "cc.created_at",
                "updated_at": "cc.created_at",
                "sent_at": "cc.created_at",
                "delivered_at": "cc.created_at",
            },
            source="cc",
            auto_pk=True,
        )
        sql = f"""
WITH g AS (
  SELECT '+55119' || lpad((%(offset)s + n)::text, 8, '0') AS phone,
         now() - interval '200 days' - (%(offset)s + n) * interval '1 second' AS at
    FROM generate_series(1, %(size)s) AS n
), cc AS ({campaign_contact} RETURNING id, phone, created_at)
{contact}"""
        with connection.cursor() as cursor:
            cursor.execute(
                sql,
                {
                    "tenant": ctx["tenant"].pk,
                    "campaign": campaign.pk,
                    "billing_campaign": billing_campaign.pk,
                    "queue": queue.pk,
                    "rendered": RENDERED,
                    "offset": offset,
                    "size": size,
                    "now": datetime.now(UTC),
                },
            )
        ib.log(f"seeded {offset + size:,} / {count:,}")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_billingcontact; ANALYZE campaigns_campaigncontact")
    return time.perf_counter() - start


def ingest_load(base: str, raw_key: str, *, clients: int, requests: int, big: int) -> dict[str, Any]:
    """One-contact requests from `clients` clients, and `big` 1,000-contact requests beside them."""
    url = f"{base}/api/v1/billing/send/notification"
    result: dict[str, Any] = {}

    def big_posts() -> None:
        import requests as http

        times = []
        with http.Session() as session:
            for n in range(big):
                body = ib.request_body(1000, f"big-{time.monotonic_ns()}-{n}")
                times.append(ib.post_once(session, url, raw_key, body, 1000))
        result["big"] = (
            {
                "requests": big,
                "p50_ms": round(ib.percentile(times, 50) * 1000, 1),
                "max_ms": round(max(times) * 1000, 1),
            }
            if times
            else {}
        )

    thread = threading.Thread(target=big_posts)
    thread.start()
    result["small"] = ib.concurrent_latency(url, raw_key, clients=clients, total=requests)
    thread.join()
    return result


def run_retention_process(env: dict[str, str], batch_size: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "run_privacy_retention", "--once", "--batch-size", str(batch_size)],
        cwd=ib.ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def under_job(base: str, raw_key: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Ingest rounds back to back for as long as the job runs (at least one)."""
    process = run_retention_process(env, args.batch_size)
    start = time.perf_counter()
    rounds = []
    while True:
        rounds.append(ingest_load(base, raw_key, clients=args.clients, requests=args.requests, big=args.big))
        if process.poll() is not None:
            break
    output, _ = process.communicate(timeout=3600)
    job_s = time.perf_counter() - start if process.returncode == 0 else None
    if process.returncode != 0:
        raise RuntimeError(f"retention job failed ({process.returncode}): {output[-2000:]}")
    cleared = json.loads(output.strip().splitlines()[-1])
    small = [r["small"] for r in rounds]
    return {
        "job_s": round(job_s, 1),
        "cleared": cleared,
        "rounds": len(rounds),
        "small": {
            "requests": sum(s["ok"] for s in small),
            "errors": sum(s["errors"] for s in small),
            "p50_ms": max(s["p50_ms"] for s in small),
            "p99_ms": max(s["p99_ms"] for s in small),
            "max_ms": max(s["max_ms"] for s in small),
        },
        "big": {
            "requests": sum(r["big"].get("requests", 0) for r in rounds),
            "p50_ms": max(r["big"].get("p50_ms", 0) for r in rounds),
            "max_ms": max(r["big"].get("max_ms", 0) for r in rounds),
        },
    }


def verify(count: int) -> dict[str, int]:
    from apps.billing.models import BillingContact

    old = BillingContact.objects.filter(status="delivered", name="Maria Silva")
    return {
        "old_rows": old.count(),
        "still_holding_text": old.exclude(rendered_message="").count(),
        "statuses_kept": old.filter(status="delivered").count(),
        "expected": count,
    }


def print_report(report: dict[str, Any]) -> None:
    base, job = report["baseline"], report["under_job"]
    print()
    print(
        f"Retention benchmark — {report['machine']['cpus']} CPU(s), {report['seeded']:,} old messages, "
        f"batch {report['batch_size']}, commit {report['commit']}, load average "
        f"{report['load_average']['before'][0]} → {report['load_average']['after'][0]}"
    )
    print()
    header = f"{'ingest':<22} | {'requests':>8} | {'errors':>6} | {'p50':>9} | {'p99':>9} | {'max':>9}"
    print(header)
    print("-" * len(header))
    for label, row in (("1 contact, alone", base["small"]), ("1 contact, under job", job["small"])):
        errors = row.get("errors", 0)
        print(
            f"{label:<22} | {row.get('ok', row.get('requests')):>8} | {errors:>6} | {row['p50_ms']:>7.1f}ms | "
            f"{row['p99_ms']:>7.1f}ms | {row['max_ms']:>7.1f}ms"
        )
    for label, row in (("1,000 contacts, alone", base["big"]), ("1,000 contacts, under", job["big"])):
        print(
            f"{label:<22} | {row['requests']:>8} | {'':>6} | {row['p50_ms']:>7.1f}ms | {'':>9} | "
            f"{row['max_ms']:>7.1f}ms"
        )
    print()
    cleared = job["cleared"]["billing_contacts"]
    print(
        f"retention job: {cleared:,} messages cleared in {job['job_s']} s "
        f"({cleared / job['job_s']:,.0f} rows/s), {job['rounds']} ingest round(s) meanwhile"
    )
    print(f"verification: {report['verification']}")
    print(f"verdict: {report['verdict']['result']} ({report['verdict']['reason']})")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="Old messages to seed.")
    parser.add_argument("--batch-size", type=int, default=1000, help="Rows per retention transaction.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent one-contact clients.")
    parser.add_argument("--requests", type=int, default=200, help="One-contact requests per round.")
    parser.add_argument("--big", type=int, default=3, help="1,000-contact requests per round.")
    parser.add_argument("--db-name", default="billing_retention_bench")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cleanups: list[Callable[[], None]] = []
    try:
        env = ib.isolated_django(
            db_name=args.db_name,
            vhost_name=args.db_name,
            redis_db=args.redis_db,
            keep_db=args.keep_db,
            web_workers=1,
            cleanups=cleanups,
        )
        ctx = ib.make_tenant(1000)
        ib.log(f"seeding {args.messages:,} old messages")
        seed_s = seed_old_contacts(ctx, args.messages)
        load_before = os.getloadavg()
        with ib.web_server(env, "uvicorn", 1) as base:
            ingest_load(base, ctx["raw_key"], clients=args.clients, requests=args.clients * 5, big=1)  # warm up
            ib.log("ingest alone")
            baseline = ingest_load(base, ctx["raw_key"], clients=args.clients, requests=args.requests, big=args.big)
            ib.log("ingest while the retention job runs")
            during = under_job(base, ctx["raw_key"], env, args)
        verification = verify(args.messages)
        p99_limit = max(baseline["small"]["p99_ms"] * P99_FACTOR, 250.0)
        blocked = (
            during["small"]["errors"]
            or during["small"]["p99_ms"] > p99_limit
            or during["small"]["max_ms"] > MAX_BOUND_MS
            or verification["still_holding_text"]
        )
        report = {
            "benchmark": "retention",
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": ib.git_commit(),
            "machine": ib.machine_info(),
            "seeded": args.messages,
            "seed_s": round(seed_s, 1),
            "batch_size": args.batch_size,
            "load_average": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
            "baseline": baseline,
            "under_job": during,
            "verification": verification,
            "verdict": {
                "result": "FAIL" if blocked else "PASS",
                "reason": f"under the job: p99 ≤ {p99_limit:.0f} ms (3× alone, ≥ 250 ms), max ≤ "
                f"{MAX_BOUND_MS:.0f} ms, no error, every old row cleared",
            },
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print_report(report)
        ib.log(f"wrote {args.output}")
        return 1 if blocked else 0
    finally:
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:
                ib.log(f"cleanup failed: {exc}")


if __name__ == "__main__":
    sys.exit(main())
