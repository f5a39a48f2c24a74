"""End-to-end helpers: the project's processes (the consumer, uvicorn...) started by the tests
against the test database (transactional tests, so a subprocess sees committed rows), the broker
and the sandbox; a tenant set up for them (`PipelineTenant`, the `pipeline_tenant` fixture of the
root conftest); polling with a deadline for what those processes do."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from apps.billing.models import BillingConfig, BillingQueue
from apps.billing.services.tenant_setup import ALWAYS_OPEN, setup_tenant
from devtools.processes import ManagedProcess
from devtools.second_broker import free_port  # noqa: F401 - re-exported for the browser helpers

from .builders import CREDITOR


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "",
    alive: list | tuple = (),
) -> Any:
    """Poll `predicate`; fail early if one of the `alive` processes died."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for handle in alive:
            if handle.process.poll() is not None:
                raise AssertionError(
                    f"process {handle.pid} exited ({handle.process.returncode}): "
                    + handle.log_path.read_text(errors="replace")[-3000:]
                )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def wait_started(*handles: ManagedProcess, timeout: float = 30.0) -> None:
    """Until each consumer process has subscribed (its 'billing consumer started' line)."""
    for handle in handles:
        wait_until(
            lambda handle=handle: any(line.get("message") == "billing consumer started" for line in handle.log_lines()),
            timeout=timeout,
            what="consumer started",
            alive=[handle],
        )


def subprocess_env(**overrides: str) -> dict[str, str]:
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "RABBITMQ_URL": settings.RABBITMQ_URL,
            "SECRET_KEY": "pipeline-test",
            "DEBUG": "0",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            "EVOLUTION_RETRY_BACKOFF": "0",
            "EVOLUTION_CONNECT_TIMEOUT": "2",
            "EVOLUTION_SEND_DEADLINE": "5",
            "BILLING_CONSUMER_HEARTBEAT_SECONDS": "1",
        }
    )
    env.pop("TEST_DATABASE_NAME", None)
    env.update(overrides)
    return env


def health_check_path(provider: str) -> str:
    """What a health check of a number asks the sandbox, per provider."""
    return "/api/sessions/" if provider == "waha" else "connectionState"


class PipelineTenant:
    def __init__(self, instance, sandbox_client, *, messages_per_minute: int, hours=ALWAYS_OPEN) -> None:
        result = setup_tenant(
            name=instance.tenant.name,
            slug=instance.tenant.slug,
            evolution_url=instance.base_url,
            evolution_api_key=instance.api_key,
            instance_name=instance.name,
            messages_per_minute=messages_per_minute,
            business_hours=hours,
            **CREDITOR,
        )
        # setup_tenant names the provider instance after ours; point it at the sandbox instance
        result.instance.instance_name, result.instance.provider = instance.instance_name, instance.provider
        result.instance.save(update_fields=["instance_name", "provider"])
        self.tenant = result.tenant
        self.instance = result.instance
        self.sandbox = sandbox_client
        self.raw_key = result.raw_api_key
        self.client = APIClient()

    @property
    def config(self) -> BillingConfig:
        return BillingConfig.for_tenant(self.tenant)

    def configure(self, **fields: Any) -> None:
        BillingConfig.objects.filter(tenant=self.tenant).update(**fields)

    def send(self, template_type: str, contacts: list[dict], external_id: str = "e2e", **body: Any) -> dict:
        response = self.client.post(
            f"/api/v1/billing/send/{template_type}",
            data=json.dumps({"external_id": external_id, "contacts": contacts, **body}),
            content_type="application/json",
            HTTP_X_BILLING_API_KEY=self.raw_key,
        )
        assert response.status_code == 202, response.content[:500]
        return response.json()

    def control(self, queue_id: str, action: str):
        return self.client.post(
            f"/api/v1/billing/queue/{queue_id}/control",
            data={"action": action},
            format="json",
            HTTP_X_BILLING_API_KEY=self.raw_key,
        )

    def queue(self, queue_id: str) -> BillingQueue:
        return BillingQueue.objects.get(pk=queue_id)

    def messages(self) -> list[dict]:
        """What the sandbox accepted for this tenant's instance."""
        return self.sandbox.messages(instance=self.instance.instance_name)


def sandbox_times(messages: list[dict]) -> list[datetime]:
    """When each message reached the sandbox (its `created_at`), in order: the closest reading
    of a pace grant a process test has (a send's own post jitter included)."""
    return sorted(datetime.fromisoformat(m["created_at"].replace("Z", "+00:00")) for m in messages)


def assert_paced(times: list[datetime], interval: float, *, jitter: float = 1.0, lag: float | None = None) -> None:
    """The pace grants sends at least 0.9 × `interval` apart (a late send wins back a tenth); the
    arrival times a process test reads carry each post's own delay, which a saturated box
    stretches for one send and not the next. So every run of k gaps must span k × 0.9 × interval
    less one `jitter`, the largest difference of two posts' delays we accept: a single gap may
    shrink by it, but a burst of several sends the pace did not separate, or a pace lost over a
    run, still fails. Seen: a 0.32 s gap at a 0.5 s pace (under the burner), and a 0.65 s
    difference (2.647 s then 1.315 s at a 2 s pace — the later send on its slot, so the earlier one's
    post was late, since a late *grant* moves the next slot with it: a quiet run of six workers).

    `lag`: the whole run also ends within (n - 1) × interval + `lag` — not slower than its pace
    by more than that. A starved sender wakes late and only a tenth of an interval is won back
    per send, so lateness adds up over a run: the bound says "no waiting for somebody else's
    slots", not "exactly on time"."""
    seconds = [t.timestamp() for t in times]
    if lag is not None and len(seconds) > 1:
        most = (len(seconds) - 1) * interval + lag
        assert seconds[-1] - seconds[0] <= most, (
            f"{len(seconds)} sends took {seconds[-1] - seconds[0]:.3f} s, over {most:.3f} s"
        )
    for i, first in enumerate(seconds):
        for j in range(i + 1, len(seconds)):
            floor = (j - i) * 0.9 * interval - jitter
            assert seconds[j] - first >= floor, (
                f"sends {i} to {j} span {seconds[j] - first:.3f} s, under {floor:.3f} s",
                [round(b - a, 3) for a, b in zip(seconds, seconds[1:])],
            )


def notification_contacts(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "phone": f"+55 11 9{6000_0000 + start + i:08d}",
            "name": f"Cliente {start + i}",
            "external_id": f"c{start + i}",
            "variables": {"message": "Aviso de teste."},
        }
        for i in range(n)
    ]
