"""Crash-safety fixtures: the pipeline's (real consumer processes, sandbox, tenants) plus a
RabbitMQ node of our own.

Every test here runs against `crash_broker`, a second RabbitMQ started for the session
(backend/devtools/second_broker.py), never against the suite's shared broker on 55672: these tests stop and
restart their broker, delete queues and count consumers, and other test runs (other checkouts,
the pipeline tests' `purge_broker`) must neither disturb them nor be disturbed. The API side of
the test process publishes there too: `settings.RABBITMQ_URL` points at it and the publisher
singleton is rebuilt for each test. The node is per session, so under pytest-xdist each worker
that draws a test from here starts a node of its own (its own name, ports and data): the tests
spread over the workers like any others, and no two of them ever share a broker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from apps.billing.broker import publisher as billing_publisher
from apps.billing.tests.support.processes import wait_until
from devtools.broker_purge import purge_billing_queues
from devtools.second_broker import SecondBroker


@pytest.fixture(scope="session")
def crash_broker_node() -> Iterator[SecondBroker]:
    broker = SecondBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def _reset_publisher() -> None:
    old = billing_publisher._publisher
    billing_publisher._publisher = None
    if old is not None:
        old.close()


@pytest.fixture(autouse=True)
def _crash_broker_for_process_tests(request) -> None:
    """Every process test (marked slow) runs against the second broker; unit tests need none."""
    if request.node.get_closest_marker("slow"):
        request.getfixturevalue("crash_broker")


@pytest.fixture
def crash_broker(crash_broker_node: SecondBroker, settings, request) -> Iterator[SecondBroker]:
    """The second broker, running and empty, used by this test's API side and processes; the
    API side's publisher connected already, except in a module that says `OPEN_PUBLISHER =
    False` (the broker-outage tests run the periodic task, which publishes what the API could
    not, as deployed)."""
    if crash_broker_node.process is None or crash_broker_node.process.poll() is not None:
        crash_broker_node.start()  # an earlier test stopped it
    settings.RABBITMQ_URL = crash_broker_node.url
    _reset_publisher()
    purge_billing_queues(crash_broker_node.url)
    if getattr(request.module, "OPEN_PUBLISHER", True):
        _open_publisher()
    yield crash_broker_node
    _reset_publisher()


def _open_publisher() -> None:
    """Connect the API side's fresh publisher now, with time to spare: its first publish
    connects and declares the topology within BILLING_PUBLISH_TIMEOUT (3 s), which a loaded box
    once overran — and a queue whose publish failed is the periodic task's, which most tests
    here do not run."""
    publisher = billing_publisher.get_publisher()

    def opened() -> bool:
        try:
            publisher._background.run(publisher._channel_ready(), 10)
        except Exception:
            return False
        return True

    wait_until(opened, timeout=60, interval=0.5, what="the publisher connected to the second broker")


def db_connections(pid: int | None = None) -> int:
    """Sessions on the test database (other than the test's own), as pg_stat_activity lists
    them; with `pid`, only those whose client socket belongs to that process (Linux /proc)."""
    with connection.cursor() as cursor:
        if pid is None:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        else:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND client_port = ANY(%s)",
                [sorted(_local_tcp_ports(pid))],
            )
        return int(cursor.fetchone()[0])


def _local_tcp_ports(pid: int) -> set[int]:
    """Local ports of the TCP sockets process `pid` has open (matched by inode in /proc/net)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def log_lines_after(handle: Any, offset: int = 0) -> list[dict]:
    """A process's JSON log lines written after byte `offset` of its log."""
    import json

    lines = []
    with open(handle.log_path, "rb") as log:
        log.seek(offset)
        for raw in log.read().decode(errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            lines.append(line)
    return lines
