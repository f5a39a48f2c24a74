from django.contrib import admin

from apps.common.admin import tenant_of
from apps.common.config_version import bump_config_version

from .models import Membership, Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "timezone", "is_active", "created_at"]
    list_filter = ["is_active", "timezone"]
    search_fields = ["name", "slug"]
    readonly_fields = ["id", "created_at", "updated_at"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "timezone", "is_active"]}),
        ("Creditor (printed by every collection message)", {"fields": ["creditor_legal_name", "creditor_document"]}),
        ("Personal data (LGPD)", {"fields": ["legal_basis", "legal_basis_notes", "privacy_contact", "retention_days"]}),
        ("Record", {"fields": ["id", "created_at", "updated_at"]}),
    ]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        tenant = tenant_of(request)
        return qs.filter(pk=tenant.pk) if tenant else qs.none()

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        bump_config_version(obj.pk)  # is_active and the time zone are part of the API's tenant cache


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["user__username", "tenant__name"]
    readonly_fields = ["created_at"]

    def has_module_permission(self, request):
        return request.user.is_superuser
