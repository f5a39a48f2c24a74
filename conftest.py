"""Test defaults: the local services that `scripts/services.sh up` starts, production-like
settings otherwise. `scripts/test.sh` sets the same; these let a bare `pytest` work too."""
import os

os.environ.setdefault("DATABASE_URL", "postgres://billing:billing@127.0.0.1:55432/billing")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:56379/0")
os.environ.setdefault("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:55672/")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
