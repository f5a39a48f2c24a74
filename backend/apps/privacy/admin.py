"""Data-subject requests in the admin: the tenant's staff answer a person's request (export
or erase) and see the requests answered so far (read-only: they are audit events)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from apps.audit.services import Actor
from apps.common.admin import TenantScopedAdmin, tenant_of
from apps.common.exceptions import ApplicationError
from apps.tenancy.models import Tenant

from .models import REQUEST_ACTIONS, DataSubjectRequest
from .services.data_subject_requests import erase_request, export_request


class DataSubjectRequestForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.all(), required=False)
    phone = forms.CharField(max_length=40, help_text="Any common writing, e.g. (11) 98765-4321 or +55 11 98765-4321.")
    action = forms.ChoiceField(choices=[("export", "Export (download JSON)"), ("erase", "Erase")])

    def __init__(self, *args: Any, superuser: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if superuser:
            self.fields["tenant"].required = True
        else:
            del self.fields["tenant"]


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(TenantScopedAdmin):
    list_display = ["occurred_at", "action", "actor_label", "ip", "details", "tenant"]
    list_filter = ["action", "tenant"]
    date_hierarchy = "occurred_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[DataSubjectRequest]:
        return super().get_queryset(request).filter(action__in=REQUEST_ACTIONS)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        superuser = request.user.is_superuser
        form = DataSubjectRequestForm(request.POST or None, superuser=superuser)
        if request.method == "POST" and form.is_valid():
            tenant = form.cleaned_data["tenant"] if superuser else tenant_of(request)
            if tenant is None:  # has_add_permission lets no tenant-less staff member through
                raise PermissionDenied
            try:
                return self._answer(
                    request, tenant=tenant, phone=form.cleaned_data["phone"], action=form.cleaned_data["action"]
                )
            except ApplicationError as exc:
                form.add_error("phone" if exc.status_code == 400 else None, exc.message)
        context = {
            **self.admin_site.each_context(request),
            "title": "Answer a data-subject request",
            "opts": self.opts,
            "form": form,
        }
        return TemplateResponse(request, "admin/privacy/datasubjectrequest/request_form.html", context)

    def _answer(self, request: HttpRequest, *, tenant: Tenant, phone: str, action: str) -> HttpResponse:
        actor = Actor.of_request(request)
        if action == "export":
            response = JsonResponse(
                export_request(tenant=tenant, raw_phone=phone, actor=actor),
                json_dumps_params={"ensure_ascii": False, "indent": 2},
            )
            response["Content-Disposition"] = 'attachment; filename="data-subject.json"'
            response["Cache-Control"] = "no-store"
            return response
        counts = erase_request(tenant=tenant, raw_phone=phone, actor=actor)
        self.message_user(
            request, f"Erased: {sum(counts.values())} row(s) changed; the opt-out is kept.", messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("admin:privacy_datasubjectrequest_changelist"))
