#!/usr/bin/env python
"""API benchmark (issue #21): the public API at the speed of a transactional service.

Measures, through a real web server (gunicorn + uvicorn workers, as deploy/gunicorn.conf.py runs
the web process), real PostgreSQL, Redis and RabbitMQ:

1. one-contact `POST /send/notification`: the server time (one client, one request at a time,
   so nothing queues: the wall time of a request on loopback, an upper bound of the server's
   own time) and the rate, p50 and p99 at 20 concurrent clients — beside, in the same run and
   the same server, a bare Django view that inserts the same five rows (bench_site/views.py);
2. 10,000 contacts in one request, beside a bare COPY of the same rows (ingest_bench's);
3. `GET /queue/{id}/status` and the first page of `GET /queue/{id}/contacts` of a
   100,000-contact queue.

The load generator is `wrk` (C, event-driven, two threads: `apt-get install wrk`), with a Lua
script that gives every request its own `external_id`; it runs on the same machine as the server,
PostgreSQL, Redis and RabbitMQ, and takes a small share of the two cores. Isolation is
ingest_bench's: its own database, RabbitMQ vhost and Redis database, all removed at the end.

    source scripts/local_env.sh && .venv/bin/python bench/api_bench.py

Prints a table and writes `bench/results/api.json`. See docs/performance.md ("The API at the
speed of a transactional service").
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_bench as bench

ROOT = bench.ROOT
RESULTS_PATH = ROOT / "bench" / "results" / "api.json"
VHOST = "billing_api_bench"
NOTICE = bench.NOTICE
TARGETS = {
    "one_contact_server_p50_ms": 5.0,
    "one_contact_rps": 300.0,
    "one_contact_p99_ms": 100.0,
    "one_contact_vs_bare": 0.7,
    "ten_thousand_s": 0.5,
    "ten_thousand_vs_copy": 0.8,
    "status_p50_ms": 10.0,
    "contacts_page_p50_ms": 20.0,
}

WRK_SCRIPT = r"""
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local counter = 0
function request()
  counter = counter + 1
  local body = string.format(
    '{"external_id":"%s-%d-%d","contacts":[{"phone":"+55 11 9%08d","name":"Cliente %d",' ..
    '"variables":{"message":"%s"}}]}', os.getenv("BENCH_RUN"), tid, counter, 70000000 + counter, counter,
    os.getenv("BENCH_NOTICE"))
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
                                  ["X-Billing-API-Key"] = os.getenv("BENCH_KEY")}, body)
end
function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def load() -> float:
    return round(os.getloadavg()[0], 2)


def cpu_seconds(markers: tuple[str, ...]) -> float:
    """User + system CPU of every process whose command line contains one of `markers` (the
    web server's workers by their port, PostgreSQL backends by their database name): CPU per
    request moves much less than wall time when other work shares the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not any(marker in cmdline for marker in markers):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


# --------------------------------------------------------------------------- HTTP helpers
class Client:
    """One keep-alive connection with http.client (the lightest client the stdlib has)."""

    def __init__(self, base: str, raw_key: str) -> None:
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        self.headers = {"X-Billing-API-Key": raw_key, "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        for attempt in (1, 2):  # the server closes a keep-alive connection idle for 5 s: reconnect once
            start = time.perf_counter()
            try:
                self.connection.request(method, path, body=body, headers=self.headers)
                response = self.connection.getresponse()
                data = response.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.connection.close()
                if attempt == 2:
                    raise
                continue
            return response.status, data, time.perf_counter() - start
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.connection.close()


def one_contact_body(external_id: str, n: int) -> bytes:
    return json.dumps(
        {
            "external_id": external_id,
            "contacts": [
                {"phone": f"+55 11 9{70000000 + n:08d}", "name": f"Cliente {n}", "variables": {"message": NOTICE}},
            ],
        },
        ensure_ascii=False,
    ).encode()


def sequential(
    client: Client, path: str, count: int, body: Callable[[int], bytes] | None = None, expect: int = 200
) -> list[float]:
    timings = []
    for n in range(count):
        status, data, elapsed = client.request("POST" if body else "GET", path, body(n) if body else None)
        if status != expect:
            raise RuntimeError(f"{path} answered {status}: {data[:300]!r}")
        timings.append(elapsed)
    return timings


def summary_ms(timings: list[float]) -> dict[str, float]:
    return {
        "n": len(timings),
        "p50_ms": round(bench.percentile(timings, 50) * 1000, 2),
        "p90_ms": round(bench.percentile(timings, 90) * 1000, 2),
        "p99_ms": round(bench.percentile(timings, 99) * 1000, 2),
    }


def wrk(
    url: str,
    *,
    raw_key: str,
    clients: int,
    seconds: int,
    threads: int = 2,
    cpu_markers: tuple[str, ...] = (),
    script: bool = True,
) -> dict[str, Any]:
    """`script=False`: plain GETs (the Lua script still reports the figures, without `request`)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(WRK_SCRIPT if script else WRK_SCRIPT[WRK_SCRIPT.index("function done") :])
    env = {**os.environ, "BENCH_RUN": uuid.uuid4().hex[:10], "BENCH_KEY": raw_key, "BENCH_NOTICE": NOTICE}
    before = load()
    cpu_before = cpu_seconds(cpu_markers)
    try:
        done = subprocess.run(
            ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds}s", "--latency", "-s", lua.name, url],
            capture_output=True,
            text=True,
            env=env,
            timeout=seconds + 60,
        )
    finally:
        Path(lua.name).unlink(missing_ok=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout[-500:]} {done.stderr[-500:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds_run = raw["duration_us"] / 1e6
    cpu = cpu_seconds(cpu_markers) - cpu_before
    return {
        "clients": clients,
        "threads": threads,
        "seconds": round(seconds_run, 2),
        "requests": raw["requests"],
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
        "requests_per_s": round((raw["requests"] - raw["non_2xx"]) / seconds_run, 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "load_before": before,
        "load_after": load(),
        "cpu_ms_per_request": round(cpu * 1000 / max(raw["requests"], 1), 2),
    }


# --------------------------------------------------------------------------- the parts
def one_contact(base: str, ctx: dict[str, Any], *, rounds: int, seconds: int, clients: int) -> dict[str, Any]:
    client = Client(base, ctx["raw_key"])
    run = uuid.uuid4().hex[:8]
    path = "/api/v1/billing/send/notification"
    sequential(client, path, 50, lambda n: one_contact_body(f"warm-{run}-{n}", n), expect=202)
    before = load()
    server = sequential(client, path, 500, lambda n: one_contact_body(f"seq-{run}-{n}", n), expect=202)
    bare_client = Client(base, ctx["raw_key"])
    sequential(bare_client, "/bench/bare-insert", 50, lambda n: one_contact_body(f"bwarm-{run}-{n}", n), expect=202)
    bare_server = sequential(
        bare_client, "/bench/bare-insert", 500, lambda n: one_contact_body(f"bseq-{run}-{n}", n), expect=202
    )
    client.close()
    bare_client.close()
    result: dict[str, Any] = {
        "server_time": {**summary_ms(server), "load_before": before, "load_after": load()},
        "bare_server_time": summary_ms(bare_server),
        "rounds": [],
    }
    markers = (f"127.0.0.1:{urlsplit(base).port}", f"{ctx['db_name']} 127.0.0.1")  # web workers, their backends
    for round_number in range(1, rounds + 1):  # API and bare view seconds apart, alternating
        api = wrk(base + path, raw_key=ctx["raw_key"], clients=clients, seconds=seconds, cpu_markers=markers)
        bare = wrk(
            base + "/bench/bare-insert", raw_key=ctx["raw_key"], clients=clients, seconds=seconds, cpu_markers=markers
        )
        ratio = round(api["requests_per_s"] / bare["requests_per_s"], 3)
        result["rounds"].append({"round": round_number, "api": api, "bare": bare, "ratio": ratio})
        bench.log(
            f"round {round_number}: API {api['requests_per_s']} req/s (p50 {api['p50_ms']} ms, p99 "
            f"{api['p99_ms']} ms, {api['cpu_ms_per_request']} ms CPU), bare view {bare['requests_per_s']} "
            f"req/s ({bare['cpu_ms_per_request']} ms CPU) → {ratio}x, "
            f"load {api['load_before']}→{bare['load_after']}"
        )
    ordered = sorted(result["rounds"], key=lambda r: r["ratio"])
    result["median_round"] = ordered[len(ordered) // 2]
    # The stack's floor on this machine: /healthz answers without touching PostgreSQL or Redis.
    result["healthz"] = wrk(
        base + "/healthz", raw_key="", clients=clients, seconds=seconds, cpu_markers=markers, script=False
    )
    bench.log(
        f"/healthz: {result['healthz']['requests_per_s']} req/s, {result['healthz']['cpu_ms_per_request']} ms "
        "CPU per request"
    )
    return result


def ten_thousand(base: str, ctx: dict[str, Any], *, repeat: int) -> dict[str, Any]:
    client = Client(base, ctx["raw_key"])
    run = uuid.uuid4().hex[:8]
    path = "/api/v1/billing/send/notification"
    size = 10_000
    rows = [bench.stored_row(i) for i in range(size)]
    client.request("POST", path, bench.request_body(1000, f"warm10k-{run}"))
    api, copy, loads = [], [], []
    for rep in range(repeat):
        body = bench.request_body(size, f"big-{run}-{rep}")
        loads.append(load())
        status, data, elapsed = client.request("POST", path, body)
        if status != 202 or json.loads(data)["accepted"] != size:
            raise RuntimeError(f"10,000-contact POST answered {status}: {data[:300]!r}")
        api.append(elapsed)
        copy.append(bench.baseline_copy(ctx, rows))
        bench.log(f"10,000 contacts: API {elapsed * 1000:.0f} ms, COPY {copy[-1] * 1000:.0f} ms")
    client.close()
    api_s, copy_s = statistics.median(api), statistics.median(copy)
    return {
        "contacts": size,
        "body_bytes": len(body),
        "repeat": repeat,
        "api_s": round(api_s, 4),
        "api_runs_s": [round(x, 4) for x in api],
        "copy_s": round(copy_s, 4),
        "copy_runs_s": [round(x, 4) for x in copy],
        "api_vs_copy": round(copy_s / api_s, 3),
        "load": loads + [load()],
    }


def big_queue_reads(base: str, ctx: dict[str, Any], *, contacts: int, samples: int) -> dict[str, Any]:
    """A queue of `contacts` contacts written by the ingest service in this process (one request
    body that large would exceed the API's body limit), then read through the API."""
    from apps.billing.models import BillingConfig
    from apps.billing.services.billing_campaign_service import BillingCampaignService

    BillingConfig.objects.filter(tenant=ctx["tenant"]).update(max_contacts_per_request=max(contacts, 10_000))
    payload = {
        "external_id": f"big-queue-{uuid.uuid4().hex[:8]}",
        "contacts": [bench.contact_payload(i) for i in range(contacts)],
    }
    started = time.perf_counter()
    result = BillingCampaignService(tenant=ctx["tenant"], api_key=None).ingest(
        template_type="notification", data={**payload, "strict": False}, raw_payload=payload
    )
    bench.log(f"{contacts:,}-contact queue written in {time.perf_counter() - started:.1f} s")
    queue_id = result.body["queue_id"]
    client = Client(base, ctx["raw_key"])
    status_path = f"/api/v1/billing/queue/{queue_id}/status"
    contacts_path = f"/api/v1/billing/queue/{queue_id}/contacts"
    sequential(client, status_path, 20)
    before = load()
    status = sequential(client, status_path, samples)
    sequential(client, contacts_path, 20)
    page = sequential(client, contacts_path, samples)
    filtered = sequential(client, contacts_path + "?status=pending", samples)
    _, data, _ = client.request("GET", contacts_path)
    second = json.loads(data)["next"]
    next_page = sequential(client, second[second.index("/api/") :], samples)
    client.close()
    return {
        "contacts": contacts,
        "queue_id": queue_id,
        "status": summary_ms(status),
        "contacts_first_page": summary_ms(page),
        "contacts_first_page_status_filter": summary_ms(filtered),
        "contacts_second_page": summary_ms(next_page),
        "load_before": before,
        "load_after": load(),
    }


# --------------------------------------------------------------------------- report
def verdicts(report: dict[str, Any]) -> list[tuple[str, float, float, str, bool]]:
    one, big, reads = report["one_contact"], report["ten_thousand"], report["big_queue"]
    median = one["median_round"]
    rows = [
        (
            "one-contact server time p50 (1 client) ≤ 5 ms",
            TARGETS["one_contact_server_p50_ms"],
            one["server_time"]["p50_ms"],
            "ms",
            one["server_time"]["p50_ms"] <= TARGETS["one_contact_server_p50_ms"],
        ),
        (
            "one-contact rate at 20 clients ≥ 300 req/s",
            TARGETS["one_contact_rps"],
            median["api"]["requests_per_s"],
            "req/s",
            median["api"]["requests_per_s"] >= TARGETS["one_contact_rps"],
        ),
        (
            "one-contact p99 at 20 clients ≤ 100 ms",
            TARGETS["one_contact_p99_ms"],
            median["api"]["p99_ms"],
            "ms",
            median["api"]["p99_ms"] <= TARGETS["one_contact_p99_ms"],
        ),
        (
            "one-contact rate ≥ 0.7× the bare view",
            TARGETS["one_contact_vs_bare"],
            median["ratio"],
            "x",
            median["ratio"] >= TARGETS["one_contact_vs_bare"],
        ),
        (
            "10,000 contacts ≤ 0.5 s",
            TARGETS["ten_thousand_s"],
            big["api_s"],
            "s",
            big["api_s"] <= TARGETS["ten_thousand_s"],
        ),
        (
            "10,000 contacts ≥ 0.8× bare COPY",
            TARGETS["ten_thousand_vs_copy"],
            big["api_vs_copy"],
            "x",
            big["api_vs_copy"] >= TARGETS["ten_thousand_vs_copy"],
        ),
        (
            "status of a 100,000-contact queue p50 ≤ 10 ms",
            TARGETS["status_p50_ms"],
            reads["status"]["p50_ms"],
            "ms",
            reads["status"]["p50_ms"] <= TARGETS["status_p50_ms"],
        ),
        (
            "first page of its contacts p50 ≤ 20 ms",
            TARGETS["contacts_page_p50_ms"],
            reads["contacts_first_page"]["p50_ms"],
            "ms",
            reads["contacts_first_page"]["p50_ms"] <= TARGETS["contacts_page_p50_ms"],
        ),
    ]
    return rows


def print_report(report: dict[str, Any]) -> None:
    one, big, reads = report["one_contact"], report["ten_thousand"], report["big_queue"]
    print()
    print(
        f"API benchmark — {report['machine']['cpus']} CPU(s) {report['machine']['cpu_model']}, "
        f"{report['server']}, commit {report['commit']}; load generator: wrk "
        f"(2 threads) on the same machine"
    )
    print()
    st, bst = one["server_time"], one["bare_server_time"]
    print(
        f"one contact, 1 client, {st['n']} requests: API p50 {st['p50_ms']} ms, p90 {st['p90_ms']} ms, "
        f"p99 {st['p99_ms']} ms | bare view p50 {bst['p50_ms']} ms (load {st['load_before']}→{st['load_after']})"
    )
    print()
    header = (
        f"{'round':>5} | {'API req/s':>9} | {'p50':>7} | {'p99':>8} | {'non-2xx':>7} | {'CPU/req':>7} | "
        f"{'bare req/s':>10} | {'bare p50':>8} | {'CPU/req':>7} | {'ratio':>6} | {'load':>11}"
    )
    print(
        f"one contact, {one['rounds'][0]['api']['clients']} concurrent clients, "
        f"{one['rounds'][0]['api']['seconds']:.0f} s each:"
    )
    print(header)
    print("-" * len(header))
    for r in one["rounds"]:
        a, b = r["api"], r["bare"]
        print(
            f"{r['round']:>5} | {a['requests_per_s']:>9.1f} | {a['p50_ms']:>5.1f}ms | {a['p99_ms']:>6.1f}ms | "
            f"{a['non_2xx'] + a['socket_errors']:>7} | {a['cpu_ms_per_request']:>5.2f}ms | "
            f"{b['requests_per_s']:>10.1f} | {b['p50_ms']:>6.1f}ms | {b['cpu_ms_per_request']:>5.2f}ms | "
            f"{r['ratio']:>5.2f}x | {a['load_before']:>4}→{b['load_after']:<5}"
        )
    print("(CPU/req: the web workers' and their PostgreSQL backends' CPU per request, from /proc)")
    h = one["healthz"]
    print(
        f"floor of the stack, GET /healthz (no PostgreSQL, no Redis), {h['clients']} clients: "
        f"{h['requests_per_s']} req/s, p50 {h['p50_ms']} ms, {h['cpu_ms_per_request']} ms CPU per request "
        f"(load {h['load_before']}→{h['load_after']})"
    )
    print()
    print(
        f"10,000 contacts (median of {big['repeat']}): API {big['api_s'] * 1000:.0f} ms "
        f"(runs {', '.join(f'{x * 1000:.0f}' for x in big['api_runs_s'])}), bare COPY {big['copy_s'] * 1000:.0f} ms "
        f"→ {big['api_vs_copy']:.2f}x (load {big['load'][0]}→{big['load'][-1]})"
    )
    print(
        f"{reads['contacts']:,}-contact queue, {reads['status']['n']} requests each: status p50 "
        f"{reads['status']['p50_ms']} ms (p99 {reads['status']['p99_ms']}); contacts first page p50 "
        f"{reads['contacts_first_page']['p50_ms']} ms, with ?status=pending "
        f"{reads['contacts_first_page_status_filter']['p50_ms']} ms, second page "
        f"{reads['contacts_second_page']['p50_ms']} ms (load {reads['load_before']}→{reads['load_after']})"
    )
    print()
    for label, _target, measured, unit, ok in report["verdicts"]:
        print(f"target: {label:<50} {measured:>8} {unit:<5} {'PASS' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="API / bare view rate rounds (median reported).")
    parser.add_argument("--seconds", type=int, default=10, help="Length of each wrk run.")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="10,000-contact runs (median reported).")
    parser.add_argument("--queue-contacts", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200, help="Requests per read figure.")
    parser.add_argument("--db-name", default="billing_api_bench")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument(
        "--db-pool", type=int, default=4, help="Django connection pool size per web worker (DB_POOL_MAX_SIZE); 0: none."
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        bench.log("wrk is not installed: apt-get install wrk")
        return 2
    cleanups: list[Callable[[], None]] = []
    try:
        env = bench.isolated_django(
            db_name=args.db_name,
            vhost_name=VHOST,
            redis_db=args.redis_db,
            keep_db=args.keep_db,
            web_workers=args.web_workers,
            cleanups=cleanups,
            DJANGO_SETTINGS_MODULE="bench_site.settings",
            PYTHONPATH=str(ROOT / "bench"),
            DB_POOL_MAX_SIZE=str(args.db_pool),
        )
        from apps.common.redis_client import get_redis

        get_redis().flushdb()
        ctx = bench.make_tenant(10_000)
        ctx["variations"] = list(ctx["template"].active_variations())
        ctx["db_name"] = args.db_name
        env.update(
            BENCH_TENANT_ID=str(ctx["tenant"].pk),
            BENCH_INSTANCE_ID=str(ctx["instance"].pk),
            BENCH_TEMPLATE_ID=str(ctx["template"].pk),
            BENCH_VARIATION_ID=str(ctx["variations"][0].pk),
        )
        with bench.web_server(env, "gunicorn", args.web_workers) as base:
            one = one_contact(base, ctx, rounds=args.rounds, seconds=args.seconds, clients=args.clients)
            big = ten_thousand(base, ctx, repeat=args.repeat)
            reads = big_queue_reads(base, ctx, contacts=args.queue_contacts, samples=args.samples)
        report = {
            "benchmark": "api",
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": bench.git_commit(),
            "machine": bench.machine_info(),
            "server": f"gunicorn + {args.web_workers} uvicorn workers (config.asgi, DEBUG=0, "
            f"DB_POOL_MAX_SIZE={args.db_pool})",
            "load_generator": "wrk 4.1 (2 threads, Lua script), same machine",
            "one_contact": one,
            "ten_thousand": big,
            "big_queue": reads,
        }
        report["verdicts"] = verdicts(report)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print_report(report)
        bench.log(f"wrote {args.output}")
        return 0
    finally:
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:
                bench.log(f"cleanup failed: {exc}")


if __name__ == "__main__":
    sys.exit(main())
