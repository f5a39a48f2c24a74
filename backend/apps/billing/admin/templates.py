"""Templates and their variations in the admin: variations inline (at most five active,
checked over the whole submitted set), content errors from the sanitizer/engine on the field,
a preview of each saved variation, a live preview endpoint for the text being typed, and
per-variation counters and rates as read-only columns."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path
from django.utils.html import format_html, format_html_join

from apps.audit.admin_mixins import AuditedDeletesMixin
from apps.audit.models import AuditAction
from apps.audit.services import audit_change
from apps.billing.admin.base import BillingTenantAdmin, percent
from apps.billing.constants import MAX_ACTIVE_VARIATIONS, TemplateType
from apps.billing.models import BillingTemplate, BillingTemplateVariation
from apps.billing.models.billing_template import ACTIVE_LIMIT_MESSAGE
from apps.billing.services.template_preview import PreviewResult, render_preview

MAX_PREVIEW_CONTENT = 20000


class VariationInlineFormSet(BaseInlineFormSet):
    """Counts active variations over the submitted set (after deletions), not row by row."""

    def _construct_form(self, i: int, **kwargs: Any) -> forms.ModelForm:
        form = super()._construct_form(i, **kwargs)  # type: ignore[misc]  # Django's private hook, absent from django-stubs
        form.instance.skip_active_limit_check = True
        return form

    def clean(self) -> None:
        super().clean()
        active = 0
        for form in self.forms:
            cleaned = getattr(form, "cleaned_data", None)
            if not cleaned or (self.can_delete and self._should_delete_form(form)):  # type: ignore[attr-defined]  # as above
                continue
            if cleaned.get("is_active"):
                active += 1
        if active > MAX_ACTIVE_VARIATIONS:
            raise ValidationError(ACTIVE_LIMIT_MESSAGE, code="too_many_active_variations")


class VariationInline(admin.TabularInline):
    model = BillingTemplateVariation
    formset = VariationInlineFormSet
    extra = 1
    fields = [
        "name",
        "content",
        "weight",
        "is_active",
        "preview",
        "used_count",
        "sent_count",
        "failed_count",
        "delivered_count",
        "read_count",
        "replied_count",
        "delivery_rate_display",
        "read_rate_display",
    ]
    readonly_fields = [
        "preview",
        "used_count",
        "sent_count",
        "failed_count",
        "delivered_count",
        "read_count",
        "replied_count",
        "delivery_rate_display",
        "read_rate_display",
    ]

    class Media:
        js = ["billing/admin/variation_preview.js"]

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs: Any):
        if db_field.name == "content":
            kwargs["widget"] = forms.Textarea(attrs={"rows": 5, "cols": 48, "class": "billing-variation-content"})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="preview (sample data)")
    def preview(self, obj: BillingTemplateVariation) -> str:
        if obj.pk is None:
            return "—"
        return render_preview_html(render_preview(obj.content, obj.template.template_type))

    @admin.display(description="delivery rate")
    def delivery_rate_display(self, obj: BillingTemplateVariation) -> str:
        return percent(obj.delivery_rate) if obj.pk else "—"

    @admin.display(description="read rate")
    def read_rate_display(self, obj: BillingTemplateVariation) -> str:
        return percent(obj.read_rate) if obj.pk else "—"


def render_preview_html(result: PreviewResult) -> str:
    if result.ok:
        return format_html(
            '<pre class="billing-preview" style="white-space: pre-wrap; max-width: 32em">{}</pre>', result.rendered
        )
    error = result.error or {}
    where = ""
    if error.get("line") is not None:
        where = f" (line {error['line']}, column {error.get('column')})"
    missing = format_html_join(", ", "<code>{}</code>", ((name,) for name in result.missing))
    return format_html(
        '<span class="errornote">{}{}</span>{}',
        error.get("message", "invalid template"),
        where,
        format_html(" missing: {}", missing) if result.missing else "",
    )


class BillingTemplateForm(forms.ModelForm):
    class Meta:
        model = BillingTemplate
        fields = "__all__"  # noqa: DJ007 - the admin's fieldsets choose what is shown; every field is editable
        widgets = {"description": forms.Textarea(attrs={"rows": 2, "cols": 60})}


@admin.register(BillingTemplate)
class BillingTemplateAdmin(AuditedDeletesMixin, BillingTenantAdmin):
    audit_deleted_action = AuditAction.TEMPLATE_DELETED
    form = BillingTemplateForm
    inlines = [VariationInline]
    list_display = [
        "name",
        "tenant",
        "template_type",
        "rotation_strategy",
        "is_default",
        "is_active",
        "active_variations",
        "updated_at",
    ]
    list_filter = ["tenant", "template_type", "rotation_strategy", "is_default", "is_active"]
    search_fields = ["name"]
    list_select_related = ["tenant"]
    readonly_fields = ["rotation_cursor", "created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BillingTemplate]:
        return (
            super()
            .get_queryset(request)
            .annotate(active_variation_count=Count("variations", filter=Q(variations__is_active=True)))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: BillingTemplate | None = None) -> list[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            readonly.append("template_type")  # campaigns copy it; changing it would split them
        return readonly

    # ------------------------------------------------------------------ audit trail
    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        changed_variations = sum(
            len(fs.new_objects) + len(fs.changed_objects) + len(fs.deleted_objects) for fs in formsets
        )
        audit_change(
            request,
            tenant=form.instance.tenant_id,
            action=AuditAction.TEMPLATE_SAVED,
            obj=form.instance,
            details={
                "created": not change,
                "fields": sorted(form.changed_data),
                "variations_changed": changed_variations,
            },
        )

    @admin.display(description="active variations", ordering="active_variation_count")
    def active_variations(self, obj: BillingTemplate) -> str:
        return f"{getattr(obj, 'active_variation_count', 0)}/{MAX_ACTIVE_VARIATIONS}"

    # ------------------------------------------------------------------ live preview endpoint
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("preview/", self.admin_site.admin_view(self.preview_view), name="{}_{}_preview".format(*info)),
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.object_preview_view),
                name="{}_{}_object_preview".format(*info),
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """POST `content` and `template_type` → `{ok, rendered, error: {code, message, line,
        column}, missing}` rendered against the type's sample variables."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        if request.method != "POST":
            return JsonResponse({"error": {"code": "method_not_allowed", "message": "Use POST."}}, status=405)
        template_type = request.POST.get("template_type", "")
        if template_type not in TemplateType.values:
            return JsonResponse(
                {"ok": False, "error": {"code": "invalid_template_type", "message": "Choose a template type first."}},
                status=400,
            )
        return self._preview_response(request.POST.get("content", ""), template_type)

    def object_preview_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """GET: every variation of the template rendered; POST `content`: that text rendered
        with the template's type. Another tenant's template is a 404."""
        try:
            template = get_object_or_404(self.get_queryset(request), pk=object_id)
        except ValidationError:
            raise Http404 from None
        if not self.has_view_or_change_permission(request, template):
            raise PermissionDenied
        if request.method == "POST":
            return self._preview_response(request.POST.get("content", ""), template.template_type)
        variations = [
            {
                "id": v.pk,
                "name": v.name,
                "is_active": v.is_active,
                **render_preview(v.content, template.template_type).as_dict(),
            }
            for v in template.variations.order_by("created_at", "id")
        ]
        return JsonResponse({"template_type": template.template_type, "variations": variations})

    def _preview_response(self, content: str, template_type: str) -> JsonResponse:
        if len(content) > MAX_PREVIEW_CONTENT:
            return JsonResponse(
                {"ok": False, "error": {"code": "too_long", "message": "Content is too long to preview."}}, status=400
            )
        return JsonResponse(render_preview(content, template_type).as_dict())
