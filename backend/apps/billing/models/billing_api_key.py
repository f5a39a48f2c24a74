"""API keys for external systems (ERP/CRM) calling the billing API.

A raw key is `bk_live_<public id>_<secret>`. Only the public id (`prefix`, for look-up and for
people to recognise a key) and the SHA-256 of the whole key are stored; the raw key exists in
memory once, when it is issued. A plain SHA-256 is enough here (no slow KDF) because the
secret is 256 random bits, not a password a person chose.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.billing.constants import API_KEY_PREFIX, TemplateType
from apps.common.config_version import bump_config_version

PUBLIC_ID_BYTES = 8  # 16 hex characters: enough to never collide in practice, short to read
SECRET_BYTES = 32  # 256 bits of entropy
MAX_RAW_KEY_LENGTH = 200  # anything longer is not one of ours; do not even hash it
LAST_USED_RESOLUTION = timedelta(seconds=60)  # write last_used_at at most once a minute per key

# Compared against when the public id is unknown, so a miss costs the same as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"billing-api-key-dummy").hexdigest()


def hash_raw_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def parse_raw_key(raw_key: Any) -> tuple[str, str] | None:
    """`(public_id, secret)` from a raw key, or None if it does not have our shape."""
    if not isinstance(raw_key, str) or len(raw_key) > MAX_RAW_KEY_LENGTH or not raw_key.startswith(API_KEY_PREFIX):
        return None
    public_id, sep, secret = raw_key[len(API_KEY_PREFIX) :].partition("_")
    if not sep or len(public_id) != PUBLIC_ID_BYTES * 2 or not secret:
        return None
    if any(c not in "0123456789abcdef" for c in public_id):
        return None
    return public_id, secret


def parse_ip_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IP (`203.0.113.7`) or CIDR (`10.0.0.0/8`, `2001:db8::/32`) as a network; ValueError if neither."""
    return ipaddress.ip_network(str(value).strip(), strict=False)


def validate_ip_list(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError("Enter a list of IP addresses or CIDR ranges.", code="invalid")
    bad = []
    for item in value:
        try:
            if not isinstance(item, str):
                raise ValueError(item)
            parse_ip_network(item)
        except ValueError:
            bad.append(str(item))
    if bad:
        raise ValidationError(
            "Not an IP address or CIDR range: %(bad)s", code="invalid_ip", params={"bad": ", ".join(bad)}
        )


def validate_template_type_list(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError("Enter a list of template types.", code="invalid")
    bad = [str(item) for item in value if item not in TemplateType.values]
    if bad:
        raise ValidationError(
            "Unknown template type: %(bad)s (allowed: %(allowed)s)",
            code="invalid_template_type",
            params={"bad": ", ".join(bad), "allowed": ", ".join(TemplateType.values)},
        )


class BillingAPIKey(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="billing_api_keys")
    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'ERP production'.")
    prefix = models.CharField(
        max_length=32, unique=True, editable=False, help_text="Public id of the key (not secret)."
    )
    key_hash = models.CharField(max_length=64, editable=False)
    is_active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    allowed_ips = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_ip_list],
        help_text="IP addresses or CIDR ranges allowed to use the key. Empty: any.",
    )
    allowed_template_types = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_template_type_list],
        help_text="Template types the key may send. Empty: all.",
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Requests per minute for this key. Empty: the tenant's billing config.",
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "billing API key"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "is_active"], name="billing_apikey_tenant_active")]
        constraints = [
            models.CheckConstraint(
                condition=Q(rate_limit_per_minute__isnull=True) | Q(rate_limit_per_minute__gt=0),
                name="billing_apikey_rate_limit_positive",
            ),
            models.CheckConstraint(condition=~Q(key_hash=""), name="billing_apikey_has_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix})"

    def __repr__(self) -> str:
        return f"<BillingAPIKey {self.pk} {self.display_prefix}>"

    @property
    def display_prefix(self) -> str:
        """What people see to recognise a key: `bk_live_<public id>_…` (no secret)."""
        return f"{API_KEY_PREFIX}{self.prefix}_…" if self.prefix else ""

    # ------------------------------------------------------------------ issuing
    def assign_new_secret(self) -> str:
        """Give this (unsaved) key a fresh public id and secret; return the raw key.

        The caller shows the raw key once and drops it: only its hash is kept.
        """
        if self.key_hash:
            raise ValueError("This key already has a secret; issue a new key instead.")
        public_id = secrets.token_hex(PUBLIC_ID_BYTES)
        raw_key = f"{API_KEY_PREFIX}{public_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
        self.prefix = public_id
        self.key_hash = hash_raw_key(raw_key)
        return raw_key

    @classmethod
    def issue(
        cls,
        *,
        tenant,
        name: str,
        expires_at: datetime | None = None,
        allowed_ips: list[str] | None = None,
        allowed_template_types: list[str] | None = None,
        rate_limit_per_minute: int | None = None,
    ) -> tuple[BillingAPIKey, str]:
        """Create a key; return it with the raw key, which is never available again."""
        key = cls(
            tenant=tenant,
            name=name,
            expires_at=expires_at,
            allowed_ips=list(allowed_ips or []),
            allowed_template_types=list(allowed_template_types or []),
            rate_limit_per_minute=rate_limit_per_minute,
        )
        raw_key = key.assign_new_secret()
        key.full_clean()
        key.save()
        return key, raw_key

    # ------------------------------------------------------------------ checking
    @classmethod
    def authenticate_raw(cls, raw_key: Any) -> BillingAPIKey | None:
        """The key whose hash matches `raw_key`, or None (malformed, unknown or wrong secret).

        Does NOT check is_active, expiry, IP or type: callers use `usability_error()` so they
        can answer with a precise error code.
        """
        parsed = parse_raw_key(raw_key)
        if parsed is None:
            return None
        public_id, _secret = parsed
        candidate_hash = hash_raw_key(raw_key)
        key = cls.objects.select_related("tenant").filter(prefix=public_id).first()
        stored_hash = key.key_hash if key is not None else _DUMMY_HASH
        if not hmac.compare_digest(candidate_hash, stored_hash) or key is None:
            return None
        return key

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def allows_ip(self, ip: str | None) -> bool:
        """True if the list is empty or `ip` falls in one of its addresses/ranges."""
        if not self.allowed_ips:
            return True
        if not ip:
            return False
        try:
            address = ipaddress.ip_address(str(ip).strip())
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for item in self.allowed_ips:
            try:
                network = parse_ip_network(item)
            except ValueError:
                continue
            if address.version == network.version and address in network:
                return True
        return False

    def allows_type(self, template_type: str) -> bool:
        return not self.allowed_template_types or str(template_type) in self.allowed_template_types

    def usability_error(
        self, *, now: datetime | None = None, ip: str | None = None, template_type: str | None = None
    ) -> str | None:
        """None if the key may be used now (from `ip`, for `template_type` when given), else a code:
        `key_revoked`, `key_inactive`, `key_expired`, `ip_not_allowed`, `template_type_not_allowed`,
        `tenant_inactive`."""
        if self.revoked_at is not None:
            return "key_revoked"
        if not self.is_active:
            return "key_inactive"
        if self.is_expired(now):
            return "key_expired"
        if not self.tenant.is_active:
            return "tenant_inactive"
        if ip is not None and not self.allows_ip(ip):
            return "ip_not_allowed"
        if template_type is not None and not self.allows_type(template_type):
            return "template_type_not_allowed"
        return None

    # ------------------------------------------------------------------ lifecycle
    def revoke(self, now: datetime | None = None) -> None:
        """Deactivate for good (idempotent: the first revocation time is kept)."""
        now = now or timezone.now()
        type(self).objects.filter(pk=self.pk).update(is_active=False, revoked_at=Coalesce(F("revoked_at"), Value(now)))
        self.refresh_from_db(fields=["is_active", "revoked_at"])
        bump_config_version(self.tenant_id)  # the API's cached copies of this key go stale now

    def touch_last_used(self, now: datetime | None = None) -> None:
        """Record use, writing at most once per LAST_USED_RESOLUTION so busy keys do not
        turn every request into a row update."""
        now = now or timezone.now()
        if self.last_used_at is not None and now - self.last_used_at < LAST_USED_RESOLUTION:
            return
        type(self).objects.filter(pk=self.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        self.last_used_at = now

    def clean(self) -> None:
        super().clean()
        if self.revoked_at is not None and self.is_active:
            raise ValidationError(
                {"is_active": "A revoked key cannot be re-activated; issue a new key instead."}, code="revoked"
            )
        if isinstance(self.allowed_ips, list):
            self.allowed_ips = [str(item).strip() for item in self.allowed_ips if str(item).strip()]
        if isinstance(self.allowed_template_types, list):
            self.allowed_template_types = sorted(set(self.allowed_template_types))
