"""gunicorn settings of the web process: ASGI (HTTP + WebSocket) through uvicorn workers.

Used by the Procfile, the Dockerfile and railway.toml: `gunicorn -c deploy/gunicorn.conf.py`.
Several workers are several processes, so Prometheus metrics run in prometheus-client's
multiprocess mode: each worker writes its samples under PROMETHEUS_MULTIPROC_DIR and `/metrics`
merges them (apps/common/metrics_exporter.py). The directory is emptied when gunicorn starts
(stale files from an earlier run would be counted again) and a dead worker's live gauges are
dropped. See docs/operations.md ("Metrics").
"""

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

wsgi_app = "config.asgi:application"
chdir = str(ROOT / "backend")
bind = f"{os.environ.get('BIND_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "uvicorn.workers.UvicornWorker"
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = None  # Django's JSON logs carry the request id; access lines would duplicate them

# Django's connection pool for each web worker (config/settings.py): under ASGI every request
# runs in a thread of its own, and without a pool it would open (and leave) a PostgreSQL
# connection per request, which costs more than the request itself (docs/performance.md).
os.environ.setdefault("DB_POOL_MAX_SIZE", "4")

# Set before any worker imports prometheus_client (workers fork from this process).
MULTIPROC_DIR = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/billing-prometheus-web")


def on_starting(server) -> None:
    shutil.rmtree(MULTIPROC_DIR, ignore_errors=True)
    os.makedirs(MULTIPROC_DIR, exist_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
