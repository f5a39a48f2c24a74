"""Settings, read from the environment only (twelve-factor). See `.env.example` for every name.

Production is the default: DEBUG is off unless set, the secret key must be given, and only
PostgreSQL is accepted (the worker relies on SELECT ... FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

# Django's generic classes (ModelAdmin[Model], ModelForm[Model]...) subscriptable at run time,
# as django-stubs types them for mypy (docs/architecture.md, "Engineering checks").
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent  # backend/
REPO_DIR = BASE_DIR.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-local-development-key-only-used-with-debug-on"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # the Swagger UI and Redoc bundles, pinned and served as our static files
    "channels",
    "apps.common",
    "apps.tenancy",
    "apps.contacts",
    "apps.connections",
    "apps.chat",
    "apps.campaigns",
    "apps.charges",  # before billing: its billing_setup_tenant extends billing's
    "apps.billing",
    "apps.audit",
    "apps.privacy",
]

MIDDLEWARE = [
    "apps.common.middleware.RequestIDMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "apps.common.middleware.ApiMetricsMiddleware",
    "apps.common.middleware.BodySizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.common.middleware.ApiErrorPagesMiddleware",  # last: it replaces DEBUG's HTML error pages
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --------------------------------------------------------------------------- database
DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    raise ImproperlyConfigured("DATABASE_URL must be set (postgres://user:password@host:port/name)")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("Only PostgreSQL is supported (the send worker needs SKIP LOCKED)")
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DB_CONNECT_TIMEOUT", 5)
# Server-side prepared statements, for the send worker's fixed per-message statements only
# (apps.common.prepared_sql asks for them explicitly). Django's own cursors bind on the client
# and are never prepared, whatever this threshold; psycopg's default (None, set by Django)
# would refuse even an explicit request. The statements look rows up by primary key, and
# PostgreSQL's default plan cache mode would still re-plan them on every execution (planning
# cost as much as running them): one generic plan instead.
DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 1_000_000)
DATABASES["default"]["OPTIONS"]["options"] = (
    f"{DATABASES['default']['OPTIONS'].get('options', '')} -c plan_cache_mode=force_generic_plan".strip()
)
# Django's own psycopg pool (Django 5.1+): threads borrow a connection and give it back, so a
# process never opens more than DB_POOL_MAX_SIZE connections whatever its thread count. The
# consumer (`manage.py run_billing_consumer`) pools by default: its sender, claim and control
# threads share 10 connections, whatever the deployment (Procfile, compose, Railway) says; the
# web workers get 4 each from deploy/gunicorn.conf.py. Other processes keep one persistent
# connection per thread (DB_CONN_MAX_AGE) unless told (0 = off).
_RUNS_THE_CONSUMER = len(sys.argv) > 1 and sys.argv[1] == "run_billing_consumer"
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 10 if _RUNS_THE_CONSUMER else 0)
if DB_POOL_MAX_SIZE > 0:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django refuses both
    # With health checks on, Django makes the pool test every connection it hands out with a
    # round trip: one per message for the consumer, which returns its connection before every
    # provider call. The pool discards a connection found broken when it comes back, and keeps
    # none idle longer than `max_idle`; a server-side drop in between costs one failed step
    # (retried 2 s later), not a round trip on every checkout.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": min(2, DB_POOL_MAX_SIZE),
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": env_float("DB_POOL_TIMEOUT", 10.0),
        "max_idle": 60.0,
    }
# Lets parallel test runs (or several checkouts) use separate test databases.
if env_str("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --------------------------------------------------------------------------- Redis / RabbitMQ
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = env_str("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "billing"),
        "TIMEOUT": 300,
    }
}

# A socket's consumer waits for its group's messages with a blocking BZPOPMIN of 5 s
# (channels_redis' `brpop_timeout`); redis-py 8 reads with a 5 s socket timeout by default, so an
# idle socket's wait raised TimeoutError and the WebSocket closed every ~5 s (channels_redis#422):
# pushes sent while the page reconnected were lost. The read timeout stays, above the wait.
CHANNEL_LAYER_SOCKET_TIMEOUT = 15.0
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT}],
            "prefix": env_str("CHANNELS_PREFIX", "billing-asgi"),
        },
    }
}

# --------------------------------------------------------------------------- auth / i18n
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_TENANT_TIMEZONE = "America/Sao_Paulo"

STATIC_URL = "static/"
# Where `collectstatic` writes (the image build's); the pairing browser test collects into a
# folder of its own, so other test workers never read a folder being rewritten.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(REPO_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --------------------------------------------------------------------------- security
# Behind Railway's (or any) TLS-terminating proxy the scheme comes from X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024)
# Largest API request body (10,000 contacts with variables fit in a few MB).
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 8 * 1024 * 1024)
# Proxies in front of the app that append to X-Forwarded-For (Railway: 1). 0 = trust REMOTE_ADDR only.
TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 0)

# --------------------------------------------------------------------------- DRF
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["apps.common.renderers.FastJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.common.parsers.SafeJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "apps.common.exceptions.api_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Billing messaging API",
    "DESCRIPTION": "Send overdue, upcoming and notification WhatsApp messages through the Evolution API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs pages load the pinned bundles from our own static files, not a CDN's `@latest`:
    # they work offline and change only when requirements.txt does.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --------------------------------------------------------------------------- logging
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "json")  # json | text
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "apps.common.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    # URL secrets (webhook path secret, userinfo, query strings) never reach a line:
    # apps/common/http_log_redaction.py.
    "filters": {"url_secrets": {"()": "apps.common.http_log_redaction.URLSecretsFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["url_secrets"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"filters": ["url_secrets"]},
        "django.server": {"filters": ["url_secrets"]},
        "uvicorn.access": {"filters": ["url_secrets"]},
        "uvicorn.error": {"filters": ["url_secrets"]},
        "django.db.backends": {"level": "WARNING"},
        "aiormq": {"level": "WARNING"},
        "aio_pika": {"level": "WARNING"},
    },
}

# --------------------------------------------------------------------------- feature settings
# Each feature adds its own block below (Evolution API client, billing, ...).

# --------------------------------------------------------------------------- Evolution API client
# The provider clients (apps/common/services/, Evolution and WAHA alike) read these at call time
# (tests override them with pytest-django's `settings` fixture). See docs/providers.md.
# Total wall-clock deadline of one call (DNS, connect, request, the whole answer), in seconds.
# A send past its deadline has an unknown outcome, so keep it above the provider's worst latency.
EVOLUTION_SEND_DEADLINE = env_float("EVOLUTION_SEND_DEADLINE", 30.0)
EVOLUTION_HEALTH_DEADLINE = env_float("EVOLUTION_HEALTH_DEADLINE", 10.0)
EVOLUTION_LOOKUP_DEADLINE = env_float("EVOLUTION_LOOKUP_DEADLINE", 15.0)  # findMessages (reconciliation)
EVOLUTION_CONNECT_TIMEOUT = env_float("EVOLUTION_CONNECT_TIMEOUT", 5.0)  # DNS + TCP + TLS, inside the deadline
# Private networks (CIDRs) where the operator runs self-hosted Evolution servers; provider URLs
# elsewhere must resolve to public addresses (SSRF guard, docs/security.md). Local runs: 127.0.0.0/8.
EVOLUTION_ALLOWED_NETWORKS = env_list("EVOLUTION_ALLOWED_NETWORKS", "")
# Wait before retry 1, 2, 3, ... (the last value repeats); "0" disables waiting.
EVOLUTION_RETRY_BACKOFF = [float(value) for value in env_list("EVOLUTION_RETRY_BACKOFF", "1,2,4")]
EVOLUTION_RETRY_JITTER = env_float("EVOLUTION_RETRY_JITTER", 0.2)  # ± fraction of each wait
# A 429 whose Retry-After is at most this is waited out inside send(); longer ones go to the caller.
EVOLUTION_RETRY_AFTER_MAX = env_float("EVOLUTION_RETRY_AFTER_MAX", 10.0)
EVOLUTION_BREAKER_THRESHOLD = env_int("EVOLUTION_BREAKER_THRESHOLD", 5)  # consecutive failures
EVOLUTION_BREAKER_COOLDOWN = env_float("EVOLUTION_BREAKER_COOLDOWN", 30.0)  # seconds
EVOLUTION_BREAKER_KEY_PREFIX = env_str("EVOLUTION_BREAKER_KEY_PREFIX", "evolution:breaker")
# seconds a "closed, no failures" answer is reused per process (0: ask Redis before every call)
EVOLUTION_BREAKER_CACHE_SECONDS = env_float("EVOLUTION_BREAKER_CACHE_SECONDS", 1.0)
EVOLUTION_USER_AGENT = env_str("EVOLUTION_USER_AGENT", "billing-messaging/1.0 (Evolution API client)")
# The provider servers (Evolution or WAHA) on which tenant staff may create numbers from the
# admin, as JSON: [{"name", "provider": "evolution"|"waha", "base_url", "api_key"}]. The key is
# the server's (Evolution AUTHENTICATION_API_KEY, WAHA WAHA_API_KEY). docs/providers.md.
WHATSAPP_PROVIDER_SERVERS = env_str("WHATSAPP_PROVIDER_SERVERS", "")

# --------------------------------------------------------------------------- billing API
# Requests per minute from one client IP, counted before authentication (slows key guessing).
BILLING_IP_RATE_LIMIT_PER_MINUTE = env_int("BILLING_IP_RATE_LIMIT_PER_MINUTE", 600)
# Hostile-input limits (see docs/api.md).
BILLING_MAX_STRING_LENGTH = env_int("BILLING_MAX_STRING_LENGTH", 1000)
BILLING_MAX_VARIABLES_DEPTH = env_int("BILLING_MAX_VARIABLES_DEPTH", 3)
BILLING_MAX_VARIABLES_BYTES = env_int("BILLING_MAX_VARIABLES_BYTES", 4096)
BILLING_MAX_METADATA_BYTES = env_int("BILLING_MAX_METADATA_BYTES", 16384)
# The API's process-local copy of a tenant's keys, config, templates, instances and hours is
# rebuilt when the tenant's configuration version changes (admin, setup, key revocation) and
# at the latest after this many seconds (writes that bypass those paths). docs/security.md.
BILLING_TENANT_CACHE_SECONDS = env_float("BILLING_TENANT_CACHE_SECONDS", 30.0)
# Retry-After (seconds) of a 503 answered while Redis (throttles, caches) is unreachable.
API_UNAVAILABLE_RETRY_AFTER = env_int("API_UNAVAILABLE_RETRY_AFTER", 5)

# --------------------------------------------------------------------------- billing pipeline
BILLING_PUBLISH_TIMEOUT = env_float("BILLING_PUBLISH_TIMEOUT", 3.0)  # seconds a publish may take
# Sender threads per consumer process: each does one step of one queue at a time (checks, one
# send, its outcome); a queue that waits holds none (apps/billing/dispatch/).
BILLING_CONSUMER_CONCURRENCY = env_int("BILLING_CONSUMER_CONCURRENCY", 6)
# Queues one consumer process holds at most; deliveries beyond it go back to the broker for
# another process. A held queue that waits costs a heap entry, not a thread.
BILLING_CONSUMER_MAX_QUEUES = env_int("BILLING_CONSUMER_MAX_QUEUES", 5000)
BILLING_CONSUMER_WATCHDOG_SECONDS = env_float("BILLING_CONSUMER_WATCHDOG_SECONDS", 15.0)  # consumer checks
BILLING_CONSUMER_RECONNECT_SECONDS = env_float("BILLING_CONSUMER_RECONNECT_SECONDS", 5.0)  # first-connect retries
# Each consumer process heartbeats its ConsumerProcess row (and the queues it holds) this often;
# one silent for DEAD_AFTER (never less than three heartbeats) is dead and its queues are released.
BILLING_CONSUMER_HEARTBEAT_SECONDS = env_float("BILLING_CONSUMER_HEARTBEAT_SECONDS", 5.0)
BILLING_CONSUMER_DEAD_AFTER_SECONDS = env_float("BILLING_CONSUMER_DEAD_AFTER_SECONDS", 30.0)
# A retry due within this stays in the consumer's scheduler; a later one hands the queue back.
BILLING_KEEP_WAITING_SECONDS = env_float("BILLING_KEEP_WAITING_SECONDS", 900.0)
# Unconfirmed contacts (the provider may have them) are looked up again this often, and failed
# as outcome_unknown when nothing proves what happened within the window.
BILLING_RECONCILE_EVERY_SECONDS = env_float("BILLING_RECONCILE_EVERY_SECONDS", 30.0)
BILLING_RECONCILE_WINDOW_SECONDS = env_float("BILLING_RECONCILE_WINDOW_SECONDS", 900.0)
# A provider's Retry-After is honoured for that number only, up to this many seconds.
BILLING_RETRY_AFTER_CAP_SECONDS = env_float("BILLING_RETRY_AFTER_CAP_SECONDS", 900.0)
# A pending queue whose last publish is older than this is published again by the periodic task.
BILLING_REPUBLISH_AFTER_SECONDS = env_float("BILLING_REPUBLISH_AFTER_SECONDS", 120.0)
BILLING_PERIODIC_INTERVAL = env_float("BILLING_PERIODIC_INTERVAL", 5.0)  # seconds between cycles
# A control check (recovery of one instance, release of one stale queue, one resume) is not
# published again for the same object sooner than this while the first may still be in flight.
BILLING_CONTROL_REPUBLISH_SECONDS = env_float("BILLING_CONTROL_REPUBLISH_SECONDS", 15.0)

# --------------------------------------------------------------------------- billing webhooks, opt-out, callbacks
# See docs/webhooks.md. Provider webhooks (Evolution → us):
BILLING_PUBLIC_BASE_URL = env_str("BILLING_PUBLIC_BASE_URL", "")  # e.g. https://billing.example.com
BILLING_WEBHOOK_MAX_BODY_BYTES = env_int("BILLING_WEBHOOK_MAX_BODY_BYTES", 256 * 1024)
# Require Evolution's `jwt_key` Bearer token on top of the URL secret (v2 servers only).
BILLING_WEBHOOK_REQUIRE_JWT = env_bool("BILLING_WEBHOOK_REQUIRE_JWT", False)
# WAHA webhooks must carry X-Webhook-Hmac (off only for a WAHA Core older than 2024.11.5).
BILLING_WAHA_WEBHOOK_REQUIRE_HMAC = env_bool("BILLING_WAHA_WEBHOOK_REQUIRE_HMAC", True)
# A receipt for a provider id no contact carries yet is kept this long (the worker may not have
# written the id yet) and applied when the worker records the sent message.
BILLING_EARLY_RECEIPT_TTL = env_int("BILLING_EARLY_RECEIPT_TTL", 600)
# A reply without a quoted message is credited to the last contact sent within this window.
BILLING_REPLY_WINDOW_DAYS = env_float("BILLING_REPLY_WINDOW_DAYS", 7.0)
# Open conversations with an unanswered customer reply are closed (closed_by "system") after this.
BILLING_CONVERSATION_IDLE_HOURS = env_float("BILLING_CONVERSATION_IDLE_HOURS", 24.0)
# Send the opt-out confirmation from a short thread after commit (off: inline, after commit).
BILLING_OPT_OUT_CONFIRMATION_ASYNC = env_bool("BILLING_OPT_OUT_CONFIRMATION_ASYNC", True)
# Client callbacks (us → the client's system), Standard Webhooks signed.
BILLING_CALLBACK_ALLOW_PRIVATE = env_bool("BILLING_CALLBACK_ALLOW_PRIVATE", False)  # SSRF rules off: tests only
# Total wall-clock deadline of one callback attempt (DNS, connect, request, the answer), seconds.
BILLING_CALLBACK_DEADLINE = env_float("BILLING_CALLBACK_DEADLINE", 10.0)
BILLING_CALLBACK_CONNECT_TIMEOUT = env_float("BILLING_CALLBACK_CONNECT_TIMEOUT", 5.0)  # inside the deadline
# run_billing_callbacks: attempts in flight per process, and per tenant (a slow endpoint holds
# only its tenant's share); seconds between looks for due deliveries when idle.
BILLING_CALLBACK_WORKERS = env_int("BILLING_CALLBACK_WORKERS", 8)
BILLING_CALLBACK_PER_TENANT = env_int("BILLING_CALLBACK_PER_TENANT", 2)
BILLING_CALLBACK_POLL_SECONDS = env_float("BILLING_CALLBACK_POLL_SECONDS", 1.0)
# Circuit per tenant endpoint: consecutive failures (5xx, no answer) that open it, seconds open.
BILLING_CALLBACK_BREAKER_THRESHOLD = env_int("BILLING_CALLBACK_BREAKER_THRESHOLD", 5)
BILLING_CALLBACK_BREAKER_COOLDOWN = env_float("BILLING_CALLBACK_BREAKER_COOLDOWN", 60.0)
BILLING_CALLBACK_BREAKER_KEY_PREFIX = env_str("BILLING_CALLBACK_BREAKER_KEY_PREFIX", "billing:callback-breaker")
BILLING_CALLBACK_RETRY_BASE_SECONDS = env_float("BILLING_CALLBACK_RETRY_BASE_SECONDS", 30.0)  # 30 s · 2^n
BILLING_CALLBACK_RETRY_MAX_SECONDS = env_float("BILLING_CALLBACK_RETRY_MAX_SECONDS", 3600.0)  # cap per wait
BILLING_CALLBACK_GIVE_UP_HOURS = env_float("BILLING_CALLBACK_GIVE_UP_HOURS", 24.0)
BILLING_CALLBACK_BATCH_SECONDS = env_float("BILLING_CALLBACK_BATCH_SECONDS", 10.0)  # per-contact events gather
BILLING_CALLBACK_BATCH_MAX = env_int("BILLING_CALLBACK_BATCH_MAX", 100)  # events per batch delivery
BILLING_CALLBACK_USER_AGENT = env_str("BILLING_CALLBACK_USER_AGENT", "billing-messaging/1.0 (callbacks)")

# --------------------------------------------------------------------------- data protection
# See docs/security.md ("Secrets at rest", "LGPD"). Fernet keys for stored secrets, newest
# first (rotate with `manage.py rotate_field_encryption`); the HMAC key that keeps an erased
# phone's opt-out and looks webhook secrets up: set it once, never change it. Both default to
# keys derived from SECRET_KEY for local runs; `check --deploy` warns until they are set.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
PERSONAL_DATA_HASH_KEY = env_str("PERSONAL_DATA_HASH_KEY")

# --------------------------------------------------------------------------- observability
# Metrics, health and real-time progress; see docs/operations.md ("Metrics", "Health").
# /metrics (web) and each process's side exporter answer a request that has
# `Authorization: Bearer <METRICS_TOKEN>` or comes from METRICS_ALLOWED_IPS (IPs/CIDRs).
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", "127.0.0.1/32,::1/128")
# Side exporter of run_billing_consumer / run_billing_periodic_tasks (0 = off) and its address
# (0.0.0.0 or :: inside a container network; loopback by default).
METRICS_PORT = env_int("METRICS_PORT", 0)
METRICS_ADDR = env_str("METRICS_ADDR", "127.0.0.1")
# Label billing metrics by tenant only while the number of tenants stays small (each tenant
# multiplies the series); off: the tenant_id label is "all".
BILLING_METRICS_TENANT_LABEL = env_bool("BILLING_METRICS_TENANT_LABEL", False)
# Process heartbeats (consumer, periodic) reported by /readyz.
BILLING_PROCESS_HEARTBEAT_SECONDS = env_float("BILLING_PROCESS_HEARTBEAT_SECONDS", 15.0)
BILLING_PROCESS_STALE_SECONDS = env_float("BILLING_PROCESS_STALE_SECONDS", 90.0)
BILLING_EXPECTED_PROCESSES = env_list("BILLING_EXPECTED_PROCESSES", "consumer,periodic")
BILLING_HEARTBEAT_KEY = env_str("BILLING_HEARTBEAT_KEY", "billing:process-heartbeats")
READINESS_AMQP_TIMEOUT = env_float("READINESS_AMQP_TIMEOUT", 3.0)  # seconds
# WebSocket progress: lifetime of the signed browser token, and at most this many pushes per
# second per queue (status changes always go out).
BILLING_WS_TOKEN_MAX_AGE = env_int("BILLING_WS_TOKEN_MAX_AGE", 300)  # seconds
BILLING_PROGRESS_MAX_PER_SECOND = env_float("BILLING_PROGRESS_MAX_PER_SECOND", 4.0)
