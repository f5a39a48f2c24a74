"""`manage.py billing_setup_tenant`: the ops command that makes a tenant ready to send.

Ops run it again to change a setting, so running it twice must change only what was asked
and never duplicate rows; every run prints a new key (the old ones keep working until
revoked). Its `--json` output is what deploy scripts read, so the key in it must work against
the real API.
"""

from __future__ import annotations

import io
import json
from datetime import time
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from apps.billing.models import BillingAPIKey, BillingConfig, BillingTemplate
from apps.billing.templating.default_templates import DEFAULT_TEMPLATES
from apps.chat.models import BusinessHours
from apps.connections.models import WhatsAppInstance
from apps.tenancy.models import Tenant

pytestmark = pytest.mark.django_db

SLUG = "clinica-sorriso"
BASE = [
    "--tenant",
    "Clínica Sorriso",
    "--evolution-url",
    "http://127.0.0.1:9/",
    "--evolution-api-key",
    "KEY",
    "--instance",
    "clinica",
]
ALL_DAYS = range(7)
MON_FRI = range(5)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("billing_setup_tenant", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def run_json(*args: str) -> dict[str, Any]:
    return json.loads(run(*args, "--json"))


def hours(slug: str = SLUG) -> set[tuple[int, time, time]]:
    rows = BusinessHours.objects.filter(tenant__slug=slug).values_list("weekday", "opens_at", "closes_at")
    return set(rows)


def hours_count(slug: str = SLUG) -> int:
    return BusinessHours.objects.filter(tenant__slug=slug).count()


def post_notification(raw_key: str, external_id: str = "setup-check"):
    body = {
        "external_id": external_id,
        "contacts": [{"phone": "+55 11 99876-5432", "name": "Maria", "variables": {"message": "Olá"}}],
    }
    return APIClient().post(
        "/api/v1/billing/send/notification",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_X_BILLING_API_KEY=raw_key,
    )


def test_running_it_twice_keeps_one_of_everything_and_issues_a_new_key():
    first = run_json(*BASE, "--business-hours", "mon-fri 08:00-18:00")
    second = run_json(*BASE, "--business-hours", "mon-fri 08:00-18:00")

    assert (first["created"], second["created"]) == (True, False)
    assert first["tenant_id"] == second["tenant_id"]
    tenant = Tenant.objects.get(slug=SLUG)
    assert Tenant.objects.filter(slug=SLUG).count() == 1
    assert WhatsAppInstance.objects.filter(tenant=tenant).count() == 1
    assert BillingConfig.objects.filter(tenant=tenant).count() == 1
    for template_type, texts in DEFAULT_TEMPLATES.items():
        defaults = BillingTemplate.objects.filter(tenant=tenant, template_type=template_type, is_default=True)
        assert defaults.count() == 1, template_type
        assert defaults.get().variations.count() == len(texts[:5]) > 0, template_type
    assert BillingTemplate.objects.filter(tenant=tenant).count() == len(DEFAULT_TEMPLATES)
    assert hours_count() == 5
    assert hours() == {(day, time(8), time(18)) for day in MON_FRI}

    assert first["api_key"] != second["api_key"]
    assert BillingAPIKey.objects.filter(tenant=tenant).count() == 2
    assert all(BillingAPIKey.authenticate_raw(raw) is not None for raw in (first["api_key"], second["api_key"]))


def test_default_business_hours_are_set_once_and_kept_on_later_runs():
    run(*BASE)
    default = {(day, time(8), time(18)) for day in MON_FRI} | {(5, time(8), time(12))}
    assert hours() == default
    run(*BASE)
    assert hours() == default and hours_count() == len(default)


def test_new_business_hours_replace_the_old_ones():
    run(*BASE, "--business-hours", "mon-fri 08:00-18:00")
    run(*BASE, "--business-hours", "sat 09:00-13:00")
    assert hours() == {(5, time(9), time(13))}


def test_a_rerun_changes_the_settings_it_is_given_in_place(settings):
    settings.EVOLUTION_ALLOWED_NETWORKS = [
        "127.0.0.0/8",
        "10.0.0.0/24",
    ]  # the operator's self-hosted Evolution networks
    run(*BASE, "--messages-per-minute", "20")
    summary = run_json(
        "--tenant",
        "Clínica Sorriso",
        "--evolution-url",
        "http://10.0.0.5:8080",
        "--instance",
        "clinica",
        "--messages-per-minute",
        "12",
        "--timezone",
        "America/Manaus",
    )
    tenant = Tenant.objects.get(slug=SLUG)
    assert summary["messages_per_minute"] == 12
    assert BillingConfig.objects.get(tenant=tenant).messages_per_minute == 12
    assert tenant.timezone == "America/Manaus"
    instance = WhatsAppInstance.objects.get(tenant=tenant)
    assert instance.base_url == "http://10.0.0.5:8080"
    assert instance.api_key == "KEY"  # not given the second time: kept


def test_json_output_parses_and_its_key_works_against_the_api():
    summary = run_json(*BASE, "--always-open")

    assert set(summary) == {"tenant", "tenant_id", "created", "instance", "messages_per_minute", "api_key"}
    assert summary["tenant"] == SLUG and summary["instance"] == "clinica" and summary["created"] is True
    response = post_notification(summary["api_key"])
    assert response.status_code == 202, response.content[:300]
    queue_id = response.json()["queue_id"]
    status = APIClient().get(f"/api/v1/billing/queue/{queue_id}/status", HTTP_X_BILLING_API_KEY=summary["api_key"])
    assert status.status_code == 200 and status.json()["counters"]["total"] == 1


def test_the_key_of_an_earlier_run_keeps_working():
    first = run_json(*BASE, "--always-open")
    run_json(*BASE)
    assert post_notification(first["api_key"], "old-key").status_code == 202


def test_plain_output_shows_the_key_once():
    output = run(*BASE)
    assert "created" in output.splitlines()[0]
    key_lines = [line for line in output.splitlines() if "bk_live_" in line]
    assert len(key_lines) == 1
    raw = key_lines[0].rsplit(" ", 1)[-1]
    assert BillingAPIKey.authenticate_raw(raw) is not None


def test_always_open_is_24_hours_every_day():
    run(*BASE, "--always-open")
    assert hours() == {(day, time(0), time(0)) for day in ALL_DAYS}
    assert hours_count() == 7


def test_business_hours_with_a_lunch_break_and_a_short_saturday():
    run(*BASE, "--business-hours", "mon-fri 08:00-12:00,13:00-18:00; sat 08:00-12:00")
    expected = (
        {(day, time(8), time(12)) for day in MON_FRI}
        | {(day, time(13), time(18)) for day in MON_FRI}
        | {(5, time(8), time(12))}
    )
    assert hours() == expected
    assert hours_count() == 11


@pytest.mark.parametrize(
    "spec",
    [
        "mon-fri",  # no range
        "xyz 08:00-12:00",  # unknown day
        "mon-xyz 08:00-12:00",  # unknown day in a range
        "mon 8:00-12:00",  # not HH:MM
        "mon 08:00-24:00",  # hour out of range
        "mon 08:00",  # no closing time
        "mon 08:00-10:00-12:00",  # too many parts
        ";",  # no opening at all
    ],
)
def test_a_bad_business_hours_spec_is_a_command_error_and_writes_nothing(spec):
    with pytest.raises(CommandError):
        run(*BASE, "--business-hours", spec)
    assert not Tenant.objects.filter(slug=SLUG).exists()
    assert not BusinessHours.objects.exists()


def test_always_open_and_business_hours_together_are_refused():
    with pytest.raises(CommandError):
        run(*BASE, "--always-open", "--business-hours", "mon 08:00-12:00")
    assert not Tenant.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--tenant", "Clínica Sorriso", "--evolution-url", "http://127.0.0.1:9"],
        ["--tenant", "Clínica Sorriso", "--instance", "clinica"],
    ],
)
def test_evolution_url_and_instance_go_together(args):
    with pytest.raises(CommandError, match="go together"):
        run(*args)
    assert not Tenant.objects.exists()


def test_an_unknown_time_zone_is_refused_and_leaves_nothing_behind():
    with pytest.raises(CommandError):
        run(*BASE, "--timezone", "Mars/Olympus_Mons")
    assert not Tenant.objects.exists()
    assert not BillingAPIKey.objects.exists()


def test_a_provider_url_inside_our_network_is_refused_unless_the_operator_allows_it():
    with pytest.raises(CommandError, match="private address"):
        run(
            "--tenant",
            "Clínica Interna",
            "--slug",
            "interna",
            "--evolution-url",
            "http://10.9.8.7:8080",
            "--evolution-api-key",
            "KEY",
            "--instance",
            "interna",
        )
    assert not Tenant.objects.filter(slug="interna").exists()  # nothing partial
