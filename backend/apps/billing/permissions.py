from rest_framework.permissions import BasePermission

from .models import BillingAPIKey


class HasBillingAPIKey(BasePermission):
    """Every billing endpoint needs a valid key; the key's tenant scopes everything after."""

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, BillingAPIKey)
