"""The product's settings, with the bench's URLconf (the product's routes + the bare view).

Under ASGI every request runs in a thread of its own, so without a connection pool each one
opens a PostgreSQL connection (and, with CONN_MAX_AGE, leaves it open until the thread's
objects are collected). The web process must run with Django's pool (`DB_POOL_MAX_SIZE`, read
by config/settings.py on main since the dispatch-core change); where the settings do not read
it yet, the same pool is configured here from the same variable, so the benchmark measures the
web process as it should be deployed. `--db-pool 0` measures it without.
"""

import os

from config.settings import *  # noqa: F403  (the bench measures the product as configured)
from config.settings import DATABASES

ROOT_URLCONF = "bench_site.urls"

_pool_size = int(os.environ.get("DB_POOL_MAX_SIZE", "0") or 0)
if _pool_size > 0 and "pool" not in DATABASES["default"]["OPTIONS"]:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": min(2, _pool_size),
        "max_size": _pool_size,
        "timeout": 10.0,
        "max_idle": 60.0,
    }
