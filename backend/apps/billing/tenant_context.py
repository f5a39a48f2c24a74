"""Everything the public API reads about a tenant, built once per process and configuration
version: the tenant, its billing config, its API keys, its active templates with their active
variations, its active WhatsApp instances and its business-hours schedule.

Why: a one-contact request used to spend about a dozen queries re-reading the same few rows
(the key, the tenant, the config twice, the template and its variations twice, the instance,
the hours). Here they are read once into a `TenantContext`, kept in process memory and used
while the tenant's configuration version in Redis (`apps.common.config_version`) is still the
one read before the build. The API reads that version in the same Redis round trip as the
per-IP throttle, so a request checks its cache with no extra look-up, and a writer's bump
(admin, `setup_tenant`, `BillingAPIKey.revoke`) reaches every process on its next request.
Entries also expire after `BILLING_TENANT_CACHE_SECONDS`, which bounds how long a write that
bypasses those paths (a shell, a migration) can go unnoticed.

The model instances held here are shared by every request of the process: read them, never
save them (a key's `touch_last_used` only remembers when it last wrote `last_used_at`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings

from apps.billing.models import BillingAPIKey, BillingConfig, BillingTemplate
from apps.billing.services.daily_cap import NumberQuota, tenant_quotas
from apps.billing.templating.date_calculator import BillingDateCalculator
from apps.billing.templating.engine import BillingTemplateEngine
from apps.chat.services import BusinessHoursService
from apps.chat.services.business_hours import WeeklySchedule
from apps.common.config_version import bump_config_version, ensure_config_version, version_key
from apps.common.redis_client import get_redis, text
from apps.connections.models import WhatsAppInstance
from apps.tenancy.creditor import CREDITOR_VARIABLES
from apps.tenancy.models import Tenant

# Names the date calculator fills in for every contact: a template may use them freely.
ENRICHED_VARIABLES = frozenset(BillingDateCalculator.COMPUTED_KEYS) | frozenset(
    CREDITOR_VARIABLES
)  # the worker adds them


@dataclass(frozen=True)
class TemplateEntry:
    """An active template, its active variations in rotation order, and the variables every
    one of its renders needs (so ingest refuses a contact that lacks one)."""

    template: BillingTemplate
    variations: tuple[Any, ...]
    needed_variables: frozenset[str]


@dataclass(frozen=True)
class TenantContext:
    tenant: Tenant
    config: BillingConfig
    version: str
    built_at: float
    keys: Mapping[str, BillingAPIKey]  # by public id (prefix)
    templates_by_id: Mapping[uuid.UUID, TemplateEntry]
    templates_by_name: Mapping[str, TemplateEntry]
    default_templates: Mapping[str, TemplateEntry]  # by template type
    instance_ids_by_name: Mapping[str, int]  # active instances only
    default_instance_id: int | None  # the config's default if active, else the only active one
    schedule: WeeklySchedule = field(repr=False)
    number_quotas: Mapping[int, NumberQuota] = field(default_factory=dict, repr=False)  # warm-up, by instance

    def template(self, ref: str) -> TemplateEntry | None:
        """By id, else by name (a template's name may look like a UUID)."""
        try:
            entry = self.templates_by_id.get(uuid.UUID(ref))
        except ValueError:
            entry = None
        return entry or self.templates_by_name.get(ref)


_contexts: dict[Any, TenantContext] = {}
_key_tenants: dict[str, Any] = {}  # public id → tenant id: a key never changes tenant
_lock = threading.Lock()


def known_tenant_for_key(public_id: str) -> Any | None:
    """The tenant of this public id if this process has already looked it up (no query)."""
    return _key_tenants.get(public_id)


def tenant_id_for_key(public_id: str) -> Any | None:
    """The tenant of the key with this public id (None if there is none), from memory after the
    first look-up: the pair never changes, so it needs no invalidation."""
    tenant_id = _key_tenants.get(public_id)
    if tenant_id is None:
        tenant_id = BillingAPIKey.objects.filter(prefix=public_id).values_list("tenant_id", flat=True).first()
        if tenant_id is not None:
            _key_tenants[public_id] = tenant_id
    return tenant_id


def forget_key(public_id: str) -> None:
    """A key that is gone (deleted) stops resolving to a tenant."""
    _key_tenants.pop(public_id, None)


def read_version(tenant_id: Any) -> str | None:
    """The tenant's configuration version, for callers that did not read it with the throttle."""
    return text(get_redis().get(version_key(tenant_id)))


def cached_context(tenant_id: Any | None) -> TenantContext | None:
    """The process's copy, if any and younger than the TTL, without asking whether it is current
    (the caller reads the version next and checks with `context_for`)."""
    context = _contexts.get(tenant_id) if tenant_id is not None else None
    if context is None or time.monotonic() - context.built_at >= float(settings.BILLING_TENANT_CACHE_SECONDS):
        return None
    return context


def forget_all() -> None:
    """Redis failed under this process: a version bump may have been lost with it, so nothing
    built before may be trusted once it is back."""
    with _lock:
        _contexts.clear()


def context_for(tenant_id: Any, version: str | None, *, rebuild: bool = False) -> TenantContext | None:
    """The tenant's context at `version` (read from Redis before calling; None when Redis holds
    none): the process's copy if it was built at that version and is younger than the TTL, else
    a fresh one from the database. None when the tenant does not exist."""
    version = ensure_config_version(tenant_id, version)
    context = _contexts.get(tenant_id)
    ttl = float(settings.BILLING_TENANT_CACHE_SECONDS)
    if not rebuild and context is not None and context.version == version and time.monotonic() - context.built_at < ttl:
        return context
    context = build_context(tenant_id, version)
    with _lock:
        if context is None:
            _contexts.pop(tenant_id, None)
        else:
            _contexts[tenant_id] = context
    return context


def current_context(tenant_id: Any) -> TenantContext:
    """For callers outside an API request (other services): the version costs one Redis read.
    Without Redis they get a context built from the database (the API answers 503 then, but
    a service called by a worker need not fail for a cache)."""
    try:
        context = context_for(tenant_id, read_version(tenant_id))
    except redis.RedisError:
        forget_all()
        context = build_context(tenant_id, "")
    if context is None:
        raise Tenant.DoesNotExist(f"Tenant {tenant_id} does not exist.")
    return context


def invalidate(tenant_id: Any) -> None:
    """Something in the database disagreed with the cached copy: rebuild here now, and make
    every other process rebuild too."""
    with _lock:
        _contexts.pop(tenant_id, None)
    bump_config_version(tenant_id)


def build_context(tenant_id: Any, version: str) -> TenantContext | None:
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return None
    config = BillingConfig.for_tenant(tenant)
    tenant.billing_config = config  # the reverse one-to-one, cached: key.tenant.billing_config reads no row
    keys = {}
    for key in BillingAPIKey.objects.filter(tenant=tenant):
        key.tenant = tenant
        keys[key.prefix] = key
    templates = list(BillingTemplate.objects.filter(tenant=tenant, is_active=True))
    variations: dict[uuid.UUID, list[Any]] = {template.pk: [] for template in templates}
    for template in templates:
        template.tenant = tenant
    if templates:
        from apps.billing.models import BillingTemplateVariation

        for variation in BillingTemplateVariation.objects.filter(template__in=templates, is_active=True).order_by(
            "created_at", "id"
        ):
            variations[variation.template_id].append(variation)
    entries = [_template_entry(template, variations[template.pk]) for template in templates]
    instances = dict(WhatsAppInstance.objects.filter(tenant=tenant, is_active=True).values_list("name", "id"))
    default_instance_id = config.default_instance_id if config.default_instance_id in instances.values() else None
    if default_instance_id is None and len(instances) == 1:
        default_instance_id = next(iter(instances.values()))
    return TenantContext(
        tenant=tenant,
        config=config,
        version=version,
        built_at=time.monotonic(),
        keys=keys,
        templates_by_id={entry.template.pk: entry for entry in entries},
        templates_by_name={entry.template.name: entry for entry in entries},
        default_templates={entry.template.template_type: entry for entry in entries if entry.template.is_default},
        instance_ids_by_name=instances,
        default_instance_id=default_instance_id,
        schedule=BusinessHoursService.schedule_for(tenant),
        number_quotas=tenant_quotas(tenant),
    )


def _template_entry(template: BillingTemplate, variations: list[Any]) -> TemplateEntry:
    needed: set[str] = set(template.required_variables or [])
    for variation in variations:
        needed |= BillingTemplateEngine.variables_used(variation.content)
    needed = {name for name in needed if name.split(".")[0] not in ENRICHED_VARIABLES}
    return TemplateEntry(template, tuple(variations), frozenset(needed))
