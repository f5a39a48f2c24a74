"""Settings for pytest: production settings plus the development tools (dev_settings), with
defaults that point at the local services `scripts/services.sh up` starts. `scripts/test.sh`
exports the same values; these let a bare `python -m pytest` work too. Nothing here loosens production behaviour."""

import os
from urllib.parse import quote, unquote, urlsplit, urlunsplit

os.environ.setdefault("DATABASE_URL", "postgres://billing:billing@127.0.0.1:55432/billing")
# Redis database 1: the local run (`make run`) keeps database 0, and the heartbeats, throttles and
# caches the tests write must not show up in its /readyz.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:56379/1")
os.environ.setdefault("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:55672/")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# The Evolution sandbox the tests start listens on loopback: the operator's allow-list for
# private provider hosts (EVOLUTION_ALLOWED_NETWORKS) names it, as a local run does. Set in the
# environment so the consumer and periodic processes the tests start inherit it.
os.environ.setdefault("EVOLUTION_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
# Keys for secrets at rest and erased phones' hashes: fixed test values in the environment, so
# the consumer processes the tests start (with a SECRET_KEY of their own) read the same rows.
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWZpZWxkLWVuY3J5cHRpb24ta2V5ISE=")
os.environ.setdefault("PERSONAL_DATA_HASH_KEY", "test-only-personal-data-hash-key")


def _per_worker(worker: str) -> None:
    """Under pytest-xdist each worker (`gw0`, `gw1`...) is a test session of its own: pytest-django
    gives it its own test database (suffixed `_gw0`...), and this its own Redis database (the
    base one plus the worker's number: heartbeats, throttles and locks do not leak between
    workers) and its own RabbitMQ vhost (`<base vhost>-gw0`: one worker's consumer never takes
    another's wake-up calls). Written to the environment, so the processes the tests start
    inherit them; the root conftest creates the vhost when it is missing."""
    index = int(worker.removeprefix("gw"))
    redis = urlsplit(os.environ["REDIS_URL"])
    redis_db = int(redis.path.strip("/") or 0) + index
    if redis_db > 15:
        raise RuntimeError(f"xdist worker {worker} would use Redis database {redis_db}: lower the base in REDIS_URL")
    os.environ["REDIS_URL"] = urlunsplit(redis._replace(path=f"/{redis_db}"))
    broker = urlsplit(os.environ["RABBITMQ_URL"])
    vhost = unquote(broker.path[1:]).strip("/") or "billing-tests"
    os.environ["RABBITMQ_URL"] = urlunsplit(broker._replace(path="/" + quote(f"{vhost}-{worker}", safe="")))


# Once per worker: the processes its tests start with these settings inherit both variables and
# the URLs already derived (BILLING_TEST_WORKER says so).
if os.environ.get("PYTEST_XDIST_WORKER", "") not in ("", os.environ.get("BILLING_TEST_WORKER")):
    _per_worker(os.environ["PYTEST_XDIST_WORKER"])
    os.environ["BILLING_TEST_WORKER"] = os.environ["PYTEST_XDIST_WORKER"]

from .dev_settings import *  # noqa: E402, F403 - after the per-worker environment, which the settings read

# scripts/test.sh migrates one template database first (devtools/test_template_db.py): each
# worker's test database is a copy of it, with nothing left to migrate.
if os.environ.get("BILLING_TEST_TEMPLATE_DB"):
    DATABASES["default"].setdefault("TEST", {})["TEMPLATE"] = os.environ["BILLING_TEST_TEMPLATE_DB"]  # noqa: F405 - from the settings imported above

# The manifest needs `collectstatic`; tests render admin pages without it.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405 - from the settings imported above

# Every test client comes from 127.0.0.1: the per-IP throttle would otherwise couple unrelated
# tests. The throttle's own tests lower it with the `settings` fixture.
BILLING_IP_RATE_LIMIT_PER_MINUTE = 1_000_000
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
