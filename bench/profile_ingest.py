#!/usr/bin/env python
"""Where does an ingest request spend its time? cProfile around one POST, in-process.

Companion to `ingest_bench.py` (same isolated database, vhost and Redis database; same
payloads): when a target fails, this says which functions to look at. It drives the real
middleware, DRF view and service through Django's test client, so only the HTTP server and
the network are left out.

    source scripts/local_env.sh                     # from the repository root
    .venv/bin/python bench/profile_ingest.py --contacts 10000 --top 30
    .venv/bin/python bench/profile_ingest.py --contacts 1 --requests 300 --sort tottime   # the one-contact path
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_bench as bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cProfile one ingest request.")
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument(
        "--requests", type=int, default=1, help="Profile this many requests in a row (e.g. 500 one-contact requests)."
    )
    parser.add_argument("--top", type=int, default=30, help="Rows of the profile to print.")
    parser.add_argument("--sort", default="cumulative", help="pstats sort key (cumulative, tottime, ...).")
    parser.add_argument("--db-name", default="billing_bench")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--redis-db", type=int, default=15)
    parser.add_argument("--dump", type=Path, help="Also write the raw profile here (for snakeviz & co).")
    args = parser.parse_args(argv)
    # WhiteNoise warns that collectstatic never ran: irrelevant to an API request.
    warnings.filterwarnings("ignore", message="No directory at")

    cleanups: list[Callable[[], None]] = []
    try:
        bench.isolated_django(
            db_name=args.db_name,
            vhost_name=bench.VHOST,
            redis_db=args.redis_db,
            keep_db=args.keep_db,
            web_workers=1,
            cleanups=cleanups,
            ALLOWED_HOSTS="testserver",
        )
        from django.test import Client

        cleanups.insert(0, _close_publisher)  # before its vhost goes away
        ctx = bench.make_tenant(args.contacts)
        client = Client()

        def post(size: int) -> float:
            body = bench.request_body(size, f"profile-{uuid.uuid4().hex}")
            start = time.perf_counter()
            response = client.post(
                "/api/v1/billing/send/notification",
                data=body,
                content_type="application/json",
                HTTP_X_BILLING_API_KEY=ctx["raw_key"],
            )
            elapsed = time.perf_counter() - start
            if response.status_code != 202:
                raise RuntimeError(f"{response.status_code}: {response.content[:300]!r}")
            return elapsed

        for _ in range(3):
            post(1)  # warm-up: imports, connections, caches
        post(min(args.contacts, 1000))
        plain = sorted(post(args.contacts) for _ in range(args.requests))[args.requests // 2]
        profiler = cProfile.Profile()
        profiler.enable()
        profiled = sum(post(args.contacts) for _ in range(args.requests)) / args.requests
        profiler.disable()
        print(
            f"{args.contacts} contacts × {args.requests} request(s): {plain * 1000:.2f} ms unprofiled (median), "
            f"{profiled * 1000:.2f} ms under cProfile (mean)"
        )
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())
        if args.dump:
            profiler.dump_stats(args.dump)
        return 0
    finally:
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:
                bench.log(f"cleanup failed: {exc}")


def _close_publisher() -> None:
    from apps.billing.broker import publisher as billing_publisher

    if billing_publisher._publisher is not None:
        billing_publisher._publisher.close()


if __name__ == "__main__":
    sys.exit(main())
