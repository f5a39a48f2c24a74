"""Who may work in a tenant's inbox: the one rule, asked by the inbox pages on every request
and by the inbox socket on its handshake (a token outlives a demotion only until then)."""

from __future__ import annotations

from typing import Any

from apps.tenancy.models import Tenant


def inbox_tenant(user: Any) -> Tenant | None:
    """The tenant whose inbox `user` may work in: an active staff user attached to an active
    tenant (`tenancy.Membership`, as the admin's tenant scoping); None otherwise."""
    if user is None or not user.is_active or not user.is_staff:
        return None
    membership = getattr(user, "tenant_membership", None)
    tenant = membership.tenant if membership is not None else None
    return tenant if tenant is not None and tenant.is_active else None
