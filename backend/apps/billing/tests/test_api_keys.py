"""API keys: format, hashing, constant-time check, restrictions, revocation, CLI issuing."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.billing.models import BillingAPIKey
from apps.billing.models.billing_api_key import parse_raw_key

pytestmark = pytest.mark.django_db


def test_issue_returns_the_raw_key_once_and_stores_only_its_hash(tenant):
    key, raw = BillingAPIKey.issue(tenant=tenant, name="ERP")
    assert raw.startswith(f"bk_live_{key.prefix}_")
    assert len(raw.split("_", 3)[3]) >= 43  # token_urlsafe(32): 256 bits
    stored = BillingAPIKey.objects.get(pk=key.pk)
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    secret = raw.split("_", 3)[3]
    for value in vars(stored).values():
        assert secret not in str(value)
    assert secret not in str(stored) and secret not in repr(stored)


def test_two_keys_never_share_prefix_or_secret(tenant):
    (a, raw_a), (b, raw_b) = BillingAPIKey.issue(tenant=tenant, name="a"), BillingAPIKey.issue(tenant=tenant, name="b")
    assert a.prefix != b.prefix and raw_a != raw_b


def test_authenticate_raw_finds_the_key_only_with_the_exact_secret(tenant):
    key, raw = BillingAPIKey.issue(tenant=tenant, name="ERP")
    assert BillingAPIKey.authenticate_raw(raw) == key
    assert BillingAPIKey.authenticate_raw(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert BillingAPIKey.authenticate_raw(raw + "x") is None


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "bk_live_",
        "bk_live_abc",
        "bk_test_0123456789abcdef_secret",
        "bk_live_0123456789abcdef_",
        "bk_live_0123456789ABCDEF_secret",
        "bk_live_0123456789abcdeg_secret",
        "x" * 5000,
        12345,
        "bk_live_0123456789abcdef_doesnotexist",
    ],
)
def test_authenticate_raw_returns_none_for_malformed_or_unknown_keys(tenant, raw):
    BillingAPIKey.issue(tenant=tenant, name="ERP")
    assert BillingAPIKey.authenticate_raw(raw) is None


def test_parse_raw_key_keeps_underscores_inside_the_secret():
    assert parse_raw_key("bk_live_0123456789abcdef_a_b-c") == ("0123456789abcdef", "a_b-c")


def test_expiry(tenant):
    now = timezone.now()
    key, _ = BillingAPIKey.issue(tenant=tenant, name="ERP", expires_at=now + timedelta(days=1))
    assert not key.is_expired(now)
    assert key.is_expired(now + timedelta(days=1))
    assert key.usability_error(now=now + timedelta(days=2)) == "key_expired"
    forever, _ = BillingAPIKey.issue(tenant=tenant, name="forever")
    assert not forever.is_expired(now + timedelta(days=3650))


def test_ip_allow_list_accepts_addresses_and_ranges(tenant):
    key, _ = BillingAPIKey.issue(tenant=tenant, name="ERP", allowed_ips=["203.0.113.7", "10.0.0.0/8", "2001:db8::/32"])
    assert key.allows_ip("203.0.113.7")
    assert key.allows_ip("10.20.30.40")
    assert key.allows_ip("::ffff:10.1.1.1")  # IPv4-mapped IPv6
    assert key.allows_ip("2001:db8::1")
    assert not key.allows_ip("203.0.113.8")
    assert not key.allows_ip("not-an-ip")
    assert not key.allows_ip(None)
    assert key.usability_error(ip="198.51.100.1") == "ip_not_allowed"
    anyone, _ = BillingAPIKey.issue(tenant=tenant, name="open")
    assert anyone.allows_ip("198.51.100.1")


def test_invalid_ips_and_types_are_refused_at_issue(tenant):
    with pytest.raises(ValidationError, match="999.1.1.1"):
        BillingAPIKey.issue(tenant=tenant, name="bad", allowed_ips=["999.1.1.1"])
    with pytest.raises(ValidationError, match="spam"):
        BillingAPIKey.issue(tenant=tenant, name="bad", allowed_template_types=["spam"])
    with pytest.raises(ValidationError):
        BillingAPIKey.issue(tenant=tenant, name="bad", rate_limit_per_minute=0)
    assert not BillingAPIKey.objects.exists()


def test_allowed_types(tenant):
    key, _ = BillingAPIKey.issue(tenant=tenant, name="ERP", allowed_template_types=["overdue"])
    assert key.allows_type("overdue") and not key.allows_type("notification")
    assert key.usability_error(template_type="upcoming") == "template_type_not_allowed"
    assert key.usability_error(template_type="overdue") is None


def test_revoke_is_final_and_idempotent(tenant):
    key, raw = BillingAPIKey.issue(tenant=tenant, name="ERP")
    key.revoke()
    first = key.revoked_at
    key.revoke()
    stored = BillingAPIKey.objects.get(pk=key.pk)
    assert not stored.is_active and stored.revoked_at == first
    assert BillingAPIKey.authenticate_raw(raw).usability_error() == "key_revoked"
    stored.is_active = True
    with pytest.raises(ValidationError, match="cannot be re-activated"):
        stored.full_clean()


def test_last_used_is_written_at_most_once_a_minute(tenant, django_assert_num_queries):
    key, _ = BillingAPIKey.issue(tenant=tenant, name="ERP")
    now = timezone.now()
    with django_assert_num_queries(1):
        key.touch_last_used(now)
    with django_assert_num_queries(0):
        key.touch_last_used(now + timedelta(seconds=30))
    assert BillingAPIKey.objects.get(pk=key.pk).last_used_at == now


def test_command_prints_the_key_once(tenant):
    out = StringIO()
    call_command(
        "create_billing_api_key",
        "--tenant",
        "acme",
        "--name",
        "ERP",
        "--expires-days",
        "30",
        "--allowed-ip",
        "10.0.0.0/8",
        "--type",
        "overdue",
        stdout=out,
    )
    raw = out.getvalue().strip().splitlines()[-1]
    key = BillingAPIKey.authenticate_raw(raw)
    assert key is not None and key.tenant == tenant and key.allowed_ips == ["10.0.0.0/8"]
    assert key.allowed_template_types == ["overdue"] and key.expires_at is not None
    assert out.getvalue().count(raw) == 1


def test_command_json_output(tenant):
    out = StringIO()
    call_command("create_billing_api_key", "--tenant", "acme", "--name", "CRM", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert BillingAPIKey.authenticate_raw(data["key"]).pk.hex == data["id"].replace("-", "")
    assert data["expires_at"] is None and data["prefix"] in data["key"]


def test_command_errors_are_clear(tenant):
    with pytest.raises(CommandError, match="No tenant"):
        call_command("create_billing_api_key", "--tenant", "nope", "--name", "x", stdout=StringIO())
    with pytest.raises(CommandError, match="not-an-ip"):
        call_command(
            "create_billing_api_key", "--tenant", "acme", "--name", "x", "--allowed-ip", "not-an-ip", stdout=StringIO()
        )
