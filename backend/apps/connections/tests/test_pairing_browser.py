"""Pairing in a real browser: headless Chromium logs a tenant's staff member into the admin served
by a real ASGI server (uvicorn), opens the number's pairing page, sees the provider's QR code
(an image that really decoded), then "the phone" scans it (the sandbox's control API) and the
page turns connected by itself, as the number does in the database. Evolution and WAHA alike."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from apps.billing.tests.support.processes import subprocess_env, wait_until
from apps.connections.models import WhatsAppInstance
from apps.tenancy.models import Membership, Tenant
from devtools.processes import REPO

# Real processes and a browser; each worker collects the static files once (collected_static).
pytestmark = [pytest.mark.slow, pytest.mark.each_provider]


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory) -> str:
    """The admin's static files, collected as the image build does (production settings serve
    them from the manifest), into a folder of this session's: the repository's `staticfiles/`
    rewritten mid-run made another worker's WhiteNoise, scanning it, find a file gone."""
    root = str(tmp_path_factory.mktemp("staticfiles"))
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=REPO,
        check=True,
        env=subprocess_env(STATIC_ROOT=root),
        timeout=300,
    )
    return root


@pytest.fixture
def static_root_env(collected_static, monkeypatch) -> None:
    """The web server (a subprocess: it inherits the environment) serves the collected folder."""
    monkeypatch.setenv("STATIC_ROOT", collected_static)


@pytest.fixture
def admin_server(static_root_env, plain_http_cookies, web_server) -> str:
    return web_server


def read(devtools, expression: str) -> Any:
    return json.loads(devtools.evaluate(f"JSON.stringify({expression})") or "null")


def test_the_pairing_page_shows_the_qr_and_turns_connected_after_the_scan(
    admin_server, browser, make_sandbox_whatsapp_instance, evolution_sandbox, provider
):
    tenant = Tenant.objects.create(name="Clínica Pareamento", slug="pareamento")
    instance = make_sandbox_whatsapp_instance(tenant=tenant, provider=provider, state="qr")
    user = User.objects.create_user("ana", password="pw-ana-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="connections"))
    Membership.objects.create(user=user, tenant=tenant)

    browser.call("Page.navigate", url=f"{admin_server}/admin/connections/whatsappinstance/{instance.pk}/pairing/")
    wait_until(
        lambda: read(
            browser,
            "location.pathname === '/admin/login/' && document.readyState === 'complete' "
            "&& !!document.getElementById('id_username')",
        ),
        timeout=30,
        what="the login page",
    )
    browser.evaluate("""document.getElementById('id_username').value = 'ana';
                        document.getElementById('id_password').value = 'pw-ana-123';
                        document.getElementById('login-form').submit(); true""")

    shown = wait_until(
        lambda: (
            (
                s := read(
                    browser,
                    """{
        state: window.pairing ? window.pairing.state : null,
        qr: (function (img) { return img && img.complete ? img.naturalWidth : 0; })(document.getElementById('pairing-qr')),
        visible: !!document.getElementById('pairing-qr-box') && !document.getElementById('pairing-qr-box').hidden
      }""",
                )
            )
            and s["state"] == "pairing"
            and s["qr"] > 0
            and s["visible"]
            and s
        ),
        timeout=30,
        what="the QR code",
    )
    assert shown["qr"] >= 21  # a decoded PNG, at least a version-1 QR wide

    evolution_sandbox.scan(instance.instance_name)

    wait_until(
        lambda: read(
            browser,
            "window.pairing.connected && !document.getElementById('pairing-connected').hidden "
            "&& document.getElementById('pairing-qr-box').hidden",
        ),
        timeout=30,
        what="the page turning connected",
    )
    stored = WhatsAppInstance.objects.get(pk=instance.pk)
    assert stored.health_state == "open" and stored.paired_at is not None
