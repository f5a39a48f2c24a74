"""Settings for the provider-client tests: no backoff waits, short timeouts, a breaker
threshold high enough not to interfere (breaker tests lower it), and a Redis key prefix unique
to each test (its keys are deleted afterwards by pattern; never FLUSHDB)."""

from __future__ import annotations

import socket
import uuid

import pytest
import redis


@pytest.fixture(autouse=True)
def evolution_test_settings(settings):
    prefix = f"test:evolution-breaker:{uuid.uuid4().hex}"
    redis_url = settings.REDIS_URL  # a test may point REDIS_URL elsewhere; clean up the real one
    settings.EVOLUTION_RETRY_BACKOFF = [0.0]
    settings.EVOLUTION_RETRY_JITTER = 0.0
    settings.EVOLUTION_RETRY_AFTER_MAX = 10.0
    settings.EVOLUTION_CONNECT_TIMEOUT = 1.0
    settings.EVOLUTION_SEND_DEADLINE = 2.0
    settings.EVOLUTION_HEALTH_DEADLINE = 1.0
    settings.EVOLUTION_LOOKUP_DEADLINE = 2.0
    settings.EVOLUTION_BREAKER_THRESHOLD = 100
    settings.EVOLUTION_BREAKER_COOLDOWN = 30.0
    settings.EVOLUTION_BREAKER_KEY_PREFIX = prefix
    yield settings
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unaccepting_port():
    """A loopback port whose accept queue is full, so a new connect() gets no answer and times
    out: a real connect timeout without depending on an unroutable address."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # Linux admits backlog + 1 connections; then SYNs are dropped
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()
