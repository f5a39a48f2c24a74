"""The number's own pages in the admin, for its tenant's staff: create it on a provider server,
pair it (the QR, refreshed until it connects), restart or log it out, and its health page (today's
sends against the warm-up cap, rates, last disconnect, why it is paused) with the two decisions
only a person takes: skip the warm-up of a number with history, clear a protection.

Every page finds the number through the admin's tenant-scoped queryset, so another tenant's
number is a 404, and acts through one billing service (billing sits above connections: the pages
ask it when they run). The QR is never logged: it goes from the provider to the page only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_GET, require_POST

from apps.common.admin import tenant_of
from apps.common.exceptions import error_body

from .models import WhatsAppInstance
from .provider_servers import provider_servers
from .services import clear_protection, skip_warm_up

TEMPLATES = "admin/connections/whatsappinstance/"
QR_REFRESH_SECONDS = 2


class NewNumberForm(forms.Form):
    name = forms.CharField(max_length=60, help_text="Our name for the number (what API callers use).")
    server = forms.ChoiceField(help_text="The provider server (Evolution or WAHA) it is created on.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        server_field = self.fields["server"]
        assert isinstance(server_field, forms.ChoiceField)  # declared above
        server_field.choices = [(name, f"{name} ({server.provider})") for name, server in provider_servers().items()]


class SkipWarmUpForm(forms.Form):
    reason = forms.CharField(
        max_length=300, strip=True, help_text="Why this number needs no warm-up (its history): kept with your name."
    )


class NumberPagesMixin(admin.ModelAdmin[WhatsAppInstance]):
    """Mixed into WhatsAppInstanceAdmin (admin.py), before TenantScopedAdmin."""

    def get_urls(self) -> list:
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("new-number/", view(self.new_number_view), name="{}_{}_new_number".format(*info)),
            path("<path:object_id>/pairing/", view(self.pairing_view), name="{}_{}_pairing".format(*info)),
            path(
                "<path:object_id>/pairing/state/",
                view(self.pairing_state_view),
                name="{}_{}_pairing_state".format(*info),
            ),
            path("<path:object_id>/pairing/restart/", view(self.restart_view), name="{}_{}_restart".format(*info)),
            path("<path:object_id>/pairing/logout/", view(self.logout_view), name="{}_{}_logout".format(*info)),
            path("<path:object_id>/health/", view(self.health_view), name="{}_{}_health".format(*info)),
            path(
                "<path:object_id>/health/skip-warm-up/",
                view(self.skip_warm_up_view),
                name="{}_{}_skip_warm_up".format(*info),
            ),
            path(
                "<path:object_id>/health/clear-protection/",
                view(self.clear_protection_view),
                name="{}_{}_clear_protection".format(*info),
            ),
            *super().get_urls(),
        ]

    # ------------------------------------------------------------------ helpers
    def _number(self, request: HttpRequest, object_id: str, *, change: bool = False) -> WhatsAppInstance:
        try:
            instance = self.get_queryset(request).select_related("tenant").filter(pk=object_id).first()
        except (ValueError, ValidationError):
            instance = None
        if instance is None:
            raise Http404("No such number.")
        allowed = (
            self.has_change_permission(request, instance)
            if change
            else self.has_view_or_change_permission(request, instance)
        )
        if not allowed:
            raise PermissionDenied
        return instance

    def _url(self, name: str, *args: Any) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args)

    def _page(self, request: HttpRequest, template: str, title: str, **context: Any) -> TemplateResponse:
        response = TemplateResponse(
            request,
            TEMPLATES + template,
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": title,
                "changelist_url": self._url("changelist"),
                **context,
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    # ------------------------------------------------------------------ creating
    def new_number_view(self, request: HttpRequest) -> HttpResponse:
        from apps.billing.services.instance_pairing import PairingError, create_number

        tenant = tenant_of(request)
        if tenant is None or not self.has_add_permission(request):
            raise PermissionDenied
        form = NewNumberForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            base_url = settings.BILLING_PUBLIC_BASE_URL or request.build_absolute_uri("/")
            try:
                instance = create_number(
                    tenant=tenant,
                    name=form.cleaned_data["name"],
                    server=provider_servers()[form.cleaned_data["server"]],
                    public_base_url=base_url,
                )
            except PairingError as exc:
                form.add_error(None, str(exc))
            else:
                self.log_addition(request, instance, [{"added": {}}])
                self.message_user(
                    request, f"Number {instance.name} created: scan its QR code to pair it.", messages.SUCCESS
                )
                return HttpResponseRedirect(self._url("pairing", instance.pk))
        return self._page(request, "new_number.html", "New WhatsApp number", form=form)

    # ------------------------------------------------------------------ pairing
    @method_decorator(require_GET)
    def pairing_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        instance = self._number(request, object_id)
        return self._page(
            request,
            "pairing.html",
            f"Pair {instance.name}",
            instance=instance,
            state_url=self._url("pairing_state", instance.pk),
            refresh_ms=QR_REFRESH_SECONDS * 1000,
            can_change=self.has_change_permission(request, instance),
        )

    @method_decorator(require_GET)
    def pairing_state_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """`{state, connected, reason, qr}` (qr: a data URL while waiting for the scan)."""
        from apps.billing.services.instance_pairing import PairingError, pairing_state

        instance = self._number(request, object_id)
        try:
            state = pairing_state(instance=instance)
        except PairingError as exc:
            response = JsonResponse(error_body("provider_unavailable", str(exc)), status=502)
        else:
            response = JsonResponse(
                {"state": state.state, "connected": state.connected, "reason": state.reason, "qr": state.qr_data_url}
            )
        response["Cache-Control"] = "no-store"
        return response

    @method_decorator(require_POST)
    def restart_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from apps.billing.services.instance_pairing import PairingError, restart_number

        instance = self._number(request, object_id, change=True)
        try:
            restart_number(instance=instance)
        except PairingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.log_change(request, instance, "Restarted the number on its provider.")
            self.message_user(request, f"{instance.name} restarted.", messages.SUCCESS)
        return HttpResponseRedirect(self._url("pairing", instance.pk))

    @method_decorator(require_POST)
    def logout_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from apps.billing.services.instance_pairing import PairingError, logout_number

        instance = self._number(request, object_id, change=True)
        try:
            logout_number(instance=instance, user=request.user)
        except PairingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.log_change(request, instance, "Logged the number out; its queues stay paused until cleared.")
            self.message_user(
                request,
                f"{instance.name} logged out; its queues stay paused until you pair it again and clear its protection.",
                messages.WARNING,
            )
        return HttpResponseRedirect(self._url("pairing", instance.pk))

    # ------------------------------------------------------------------ health
    @method_decorator(require_GET)
    def health_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from apps.billing.services.number_health import number_health

        instance = self._number(request, object_id)
        return self._page(
            request,
            "health.html",
            f"Health of {instance.name}",
            instance=instance,
            health=number_health(instance=instance),
            skip_form=SkipWarmUpForm(),
            can_change=self.has_change_permission(request, instance),
            pairing_url=self._url("pairing", instance.pk),
        )

    @method_decorator(require_POST)
    def skip_warm_up_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        instance = self._number(request, object_id, change=True)
        form = SkipWarmUpForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "Say why this number needs no warm-up.", messages.ERROR)
        elif skip_warm_up(instance=instance, user=request.user, reason=form.cleaned_data["reason"]):
            self.log_change(request, instance, f"Skipped the warm-up: {form.cleaned_data['reason']}")
            self.message_user(request, f"{instance.name} has no daily warm-up cap from now on.", messages.SUCCESS)
        return HttpResponseRedirect(self._url("health", instance.pk))

    @method_decorator(require_POST)
    def clear_protection_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        instance = self._number(request, object_id, change=True)
        if clear_protection(instances=[instance], user=request.user):
            self.log_change(request, instance, f"Cleared the protection ({instance.protected_reason}).")
            self.message_user(
                request,
                f"Protection of {instance.name} cleared: its queues resume once the provider reports it connected.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(self._url("health", instance.pk))
