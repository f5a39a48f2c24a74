"""Fixtures shared by every app's tests.

`evolution_sandbox`: the project's Evolution API sandbox, running as a real subprocess on a
free loopback port (one process per test session, reset before each test). It yields a
`SandboxClient` with `base_url`, `api_key` and helpers:

    inst = evolution_sandbox.create_instance()              # name, token (unique)
    evolution_sandbox.set_state(inst.name, "close")
    evolution_sandbox.configure(inst.name, fail_next=2, failure_status=503)
    evolution_sandbox.messages(instance=inst.name)          # accepted messages
    evolution_sandbox.send_requests(inst.name)              # every sendText call received
    evolution_sandbox.clear() / .reset()

`webhook_receiver`: a local HTTP server recording the webhooks sent to `.url`
(`.events("messages.update")`, `.wait_for(3, "messages.update")`).

`private_redis`: a `redis-server` of the test's own on a free port, `settings.REDIS_URL` pointed
at it, that the test may `.stop()` and `.start()` again (the shared Redis serves everybody
else's tests and must never be stopped).

`sandbox_whatsapp_instance`: a saved Tenant + WhatsAppInstance whose provider is a fresh
sandbox instance (`.sandbox` holds the sandbox side). `make_sandbox_whatsapp_instance(**options)`
makes more, passing sandbox options (e.g. `api_version="v1"`, `provider="waha"`).

`provider`: which provider those instances speak, "evolution" here; a test module that must
hold for every provider is marked `each_provider` (`pytestmark = pytest.mark.each_provider`),
and its tests that use `provider` run once per provider in the same run.

The fixtures several apps' tests share live here, their helpers in plain modules under
apps/billing/tests/support/:

`api`, `other_api`: tenants A and B ready to send, each with an API key and a DRF client.
`superuser_client`: Django's test client logged in as a superuser (the admin pages).

`pipeline_tenant(messages_per_minute=600, warmed_up=True)`: a tenant whose number is a fresh
sandbox instance (transactional: the processes the test starts see its rows); `start_process`
starts `manage.py <command>` as an OS process against the test database and stops it (by PID)
at the end; `purge_broker` empties the billing queues first.

`web_server`: uvicorn serving config.asgi on a free port; `browser`: headless Chromium on it
(skips, saying how to get one, where Chromium is missing); `plain_http_cookies`: that server's
session and CSRF cookies travel over plain http on loopback.

Every session (each pytest-xdist worker is one) has its own test database, Redis database and
RabbitMQ vhost (config/test_settings.py); `broker_vhost` creates the vhost the first time.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.sandbox_process import SandboxClient, SandboxProcess, WebhookReceiver


@pytest.fixture(scope="session", autouse=True)
def no_name_resolution() -> Iterator[None]:
    """Names other than this machine's resolve to nothing, at once, as on a machine without
    network. The tests' URLs name hosts that do not exist (`erp.example.com`); the resolver
    answered that within milliseconds — and once in a while after a 5 s retry (a dropped
    query): six such waits were half of the schema fuzz's time, and any timed test could
    meet one. A test that needs a name to resolve replaces `getaddrinfo` itself."""
    real_getaddrinfo = socket.getaddrinfo
    local_names = {"localhost", socket.gethostname()}

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or _is_address(name) or name.lower().rstrip(".") in local_names:
            return real_getaddrinfo(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (tests resolve no names)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    return True


@pytest.fixture(scope="session", autouse=True)
def broker_vhost() -> str:
    """This session's RabbitMQ vhost, created when missing (a fresh clone, a new xdist worker)."""
    from django.conf import settings

    from apps.billing.tests.support.broker import ensure_vhost, vhost_of

    ensure_vhost(settings.RABBITMQ_URL)
    return vhost_of(settings.RABBITMQ_URL)


@pytest.fixture(scope="session")
def evolution_sandbox_process(tmp_path_factory: pytest.TempPathFactory):
    """The sandbox OS process for the whole session; killed by PID at the end."""
    process = SandboxProcess(log_path=tmp_path_factory.mktemp("evolution-sandbox") / "sandbox.log").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def evolution_sandbox(
    evolution_sandbox_process: SandboxProcess, request: pytest.FixtureRequest
) -> Iterator[SandboxClient]:
    """A clean sandbox for this test (reset: no instances, records or switches left over).
    Reset again when the test ends, before its database goes: a receipt or webhook retry still
    scheduled (a loaded box runs late) would otherwise reach the live server while the database
    is flushed, and its writes and the flush's locks deadlock (seen under load). The reset drops
    what is scheduled and what the deliveries running at that moment would schedule next; with a
    live server, those running deliveries are waited for too (the last inbound message of a test
    may still be handled when the test ends)."""
    client = evolution_sandbox_process.client()
    client.reset()
    yield client
    client.reset()
    if "live_server" in request.fixturenames:
        client.wait_idle(timeout=30)


@pytest.fixture
def provider() -> str:
    return "evolution"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "provider" in metafunc.fixturenames and metafunc.definition.get_closest_marker("each_provider"):
        from apps.connections.models import WhatsAppInstance

        metafunc.parametrize("provider", WhatsAppInstance.Provider.values)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse `xdist_group`: with pytest 9.2 pytest-xdist's `--dist loadgroup` no longer groups
    anything (pytest-xdist#1386: it sets a node id pytest stopped reading), silently; our crash
    tests carried one for weeks believing they shared a worker. Every test must be safe on any
    worker (each session has its own database, Redis database, vhost and second broker)."""
    if item.get_closest_marker("xdist_group"):
        pytest.fail(
            "xdist_group is not honoured with this pytest (pytest-xdist#1386): make the test safe on any worker",
            pytrace=False,
        )


@pytest.fixture
def make_sandbox_whatsapp_instance(db: None, evolution_sandbox: SandboxClient, provider: str) -> Callable[..., Any]:
    from apps.connections.models import WhatsAppInstance
    from apps.tenancy.models import Tenant

    def make(
        *,
        tenant: Tenant | None = None,
        api_version: str = "v2",
        provider: str = provider,
        warmed_up: bool = True,
        **sandbox_options: Any,
    ) -> WhatsAppInstance:
        """`warmed_up`: a number with history (its warm-up skipped, as a person would); False
        makes a brand-new number, capped from its day 0."""
        if tenant is None:
            slug = f"tenant-{uuid.uuid4().hex[:10]}"
            tenant = Tenant.objects.create(name=slug, slug=slug)
        sandbox = evolution_sandbox.create_instance(api_version=api_version, provider=provider, **sandbox_options)
        instance = WhatsAppInstance.objects.create(
            tenant=tenant,
            name=f"wa-{sandbox.name}",
            provider=provider,
            api_version=api_version,
            base_url=evolution_sandbox.base_url,
            api_key=sandbox.token,
            instance_name=sandbox.name,
        )
        if warmed_up:
            from apps.connections.services import skip_warm_up

            skip_warm_up(instance=instance, user=None, reason="a number with history (test fixture)")
        instance.sandbox = sandbox  # type: ignore[attr-defined]
        return instance

    return make


@pytest.fixture
def sandbox_whatsapp_instance(make_sandbox_whatsapp_instance: Callable[..., Any]):
    return make_sandbox_whatsapp_instance()


@pytest.fixture
def webhook_receiver():
    with WebhookReceiver() as receiver:
        yield receiver


class PrivateRedis:
    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(settings) -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    settings.REDIS_URL = server.url
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def superuser_client(client, db):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.fixture
def api(db):
    from apps.billing.tests.support.api import make_tenant

    return make_tenant("alpha")


@pytest.fixture
def other_api(db):
    from apps.billing.tests.support.api import make_tenant

    return make_tenant("beta")


@pytest.fixture
def purge_broker() -> None:
    """Wake-up calls left by earlier tests name queues this database never had: drop them."""
    from django.conf import settings

    from devtools.broker_purge import purge_billing_queues

    purge_billing_queues(settings.RABBITMQ_URL)


@pytest.fixture
def start_process(tmp_path):
    from apps.billing.tests.support.processes import subprocess_env
    from devtools.processes import ManagedProcess

    handles: list[ManagedProcess] = []

    def start(*args: str, **env_overrides: str) -> ManagedProcess:
        handle = ManagedProcess(list(args), subprocess_env(**env_overrides), tmp_path / f"proc-{len(handles)}.log")
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def pipeline_tenant(transactional_db, make_sandbox_whatsapp_instance, evolution_sandbox, purge_broker):
    from apps.billing.tests.support.processes import PipelineTenant

    def make(messages_per_minute: int = 600, warmed_up: bool = True, **options: Any) -> PipelineTenant:
        """`warmed_up=False`: a brand-new number, under its warm-up cap from day 0."""
        return PipelineTenant(
            make_sandbox_whatsapp_instance(warmed_up=warmed_up),
            evolution_sandbox,
            messages_per_minute=messages_per_minute,
            **options,
        )

    return make


@pytest.fixture
def web_server(tmp_path, transactional_db) -> Iterator[str]:
    from apps.billing.tests.support.browser import asgi_server

    with asgi_server(tmp_path) as base:
        yield base


@pytest.fixture
def browser(tmp_path):
    from apps.billing.tests.support.browser import chromium_binary, headless_chromium

    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium: run `bash scripts/browser.sh ensure` (installs Debian's chromium; needs root)")
    with headless_chromium(tmp_path, binary) as devtools:
        yield devtools


@pytest.fixture
def plain_http_cookies(monkeypatch) -> None:
    """The web server runs production settings over plain http on loopback: let its session and
    CSRF cookies travel without TLS (the subprocess inherits this environment)."""
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "0")
    monkeypatch.setenv("CSRF_COOKIE_SECURE", "0")
