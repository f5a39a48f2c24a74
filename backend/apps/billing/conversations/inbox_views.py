"""The staff inbox: server-rendered pages for a tenant's staff (Django login, no build step).

    /inbox/                   conversations waiting for a person, the latest customer message first
    /inbox/<id>/              one thread: the debts behind it, the messages, reply, resolve
    /inbox/<id>/reply         POST a person's reply (sent through the pipeline like any message)
    /inbox/<id>/resolve       POST: no longer needs a person
    /inbox/partials/…         the same fragments, for the page's live refresh
    /inbox/ws-token           a fresh socket token for a reconnecting page

Access: a logged-in, active staff user attached to a tenant (`tenancy.Membership`, as the
admin's `TenantScopedAdmin`); they see only that tenant — another tenant's conversation is a
404, like one that does not exist. A user without a tenant gets a 403 page. Forms carry CSRF
tokens; texts are rendered escaped by the templates.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_GET, require_POST

from apps.billing.services.debtor_data import open_debts
from apps.billing.services.reply_sending import MAX_REPLY_LENGTH, send_staff_reply
from apps.billing.templating.formatting import format_date, format_money
from apps.chat.models import Conversation
from apps.chat.services import conversations
from apps.common.exceptions import ApplicationError

from .live import issue_inbox_token, publish_conversation_update
from .staff_access import inbox_tenant
from .thread import build_thread

LIST_LIMIT = 100
LOGIN_URL = reverse_lazy("billing-inbox:login")

# What staff read when a reply is refused (the API answers with the codes themselves).
_REFUSALS = {
    "empty_text": "A resposta está vazia.",
    "text_too_long": f"A resposta passa de {MAX_REPLY_LENGTH} caracteres.",
    "opted_out": "Este número pediu para não receber mensagens: a resposta não foi enviada.",
    "no_instance": "Esta conversa não tem uma instância de WhatsApp para responder.",
    "unknown_instance": "A instância de WhatsApp desta conversa está desativada.",
}


class InboxLoginView(LoginView):
    template_name = "billing/inbox/login.html"
    redirect_authenticated_user = True
    next_page = reverse_lazy("billing-inbox:list")  # type: ignore[assignment]  # Django takes a lazy URL; django-stubs say str


class InboxLogoutView(LogoutView):
    next_page = LOGIN_URL  # type: ignore[assignment]  # as above


def tenant_staff(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Logged in (else the login page), staff and attached to a tenant (else 403); the view
    gets the tenant as its second argument."""

    @login_required(login_url=LOGIN_URL)
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        tenant = inbox_tenant(request.user)
        if tenant is None:
            return render(request, "billing/inbox/forbidden.html", status=403)
        response = view(request, tenant, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response

    return wrapper


def _conversation(tenant, conversation_id: str) -> Conversation:
    try:
        return conversations.conversation_get(tenant=tenant, conversation_id=conversation_id)
    except conversations.ConversationNotFound:
        raise Http404("conversation not found") from None


def _socket(request: HttpRequest, tenant) -> dict[str, Any]:
    if request.user.pk is None:  # tenant_staff lets logged-in users only
        raise PermissionDenied
    return {
        "ws_token": issue_inbox_token(tenant_id=tenant.pk, user_id=request.user.pk),
        "ws_path": "/ws/billing/inbox/",
        "token_url": reverse("billing-inbox:ws-token"),
    }


def _list_context(tenant) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "conversations": list(conversations.attention_list(tenant=tenant)[:LIST_LIMIT]),
        "tz": tenant.timezone,
    }


def _thread_context(tenant, conversation: Conversation) -> dict[str, Any]:
    debts = [
        {
            "external_id": debt.external_id,
            "type": debt.template_type,
            "status": debt.status,
            "amount": format_money(debt.amount) if debt.amount is not None else "",
            "due_date": format_date(debt.due_date) if debt.due_date else "",
        }
        for debt in open_debts(tenant=tenant, phone=conversation.contact_phone)
    ]
    return {
        "tenant": tenant,
        "thread": build_thread(conversation=conversation),
        "debts": debts,
        "tz": tenant.timezone,
        "max_length": MAX_REPLY_LENGTH,
    }


@require_GET
@tenant_staff
def inbox(request: HttpRequest, tenant) -> HttpResponse:
    return render(request, "billing/inbox/list.html", {**_list_context(tenant), **_socket(request, tenant)})


@require_GET
@tenant_staff
def inbox_list_partial(request: HttpRequest, tenant) -> HttpResponse:
    return render(request, "billing/inbox/_list.html", _list_context(tenant))


@require_GET
@tenant_staff
def thread(request: HttpRequest, tenant, conversation_id: str) -> HttpResponse:
    conversation = _conversation(tenant, conversation_id)
    return render(
        request, "billing/inbox/thread.html", {**_thread_context(tenant, conversation), **_socket(request, tenant)}
    )


@require_GET
@tenant_staff
def thread_partial(request: HttpRequest, tenant, conversation_id: str) -> HttpResponse:
    conversation = _conversation(tenant, conversation_id)
    return render(request, "billing/inbox/_thread.html", _thread_context(tenant, conversation))


@require_POST
@tenant_staff
def reply(request: HttpRequest, tenant, conversation_id: str) -> HttpResponse:
    conversation = _conversation(tenant, conversation_id)
    try:
        send_staff_reply(
            conversation=conversation,
            text=request.POST.get("text", ""),
            author_user=request.user if request.user.is_authenticated else None,  # (tenant_staff: it is)
            idempotency_key=request.POST.get("idempotency_key", "")[:100],
        )
    except ApplicationError as refused:
        messages.error(request, _REFUSALS.get(refused.code, refused.message))
    else:
        messages.success(request, "Resposta enviada para a fila de envio.")
        publish_conversation_update(tenant_id=tenant.pk, conversation_id=conversation.pk)
    return redirect("billing-inbox:thread", conversation_id=conversation.pk)


@require_POST
@tenant_staff
def resolve(request: HttpRequest, tenant, conversation_id: str) -> HttpResponse:
    conversation = conversations.resolve(conversation=_conversation(tenant, conversation_id))
    publish_conversation_update(tenant_id=tenant.pk, conversation_id=conversation.pk)
    messages.success(request, "Conversa resolvida.")
    return redirect("billing-inbox:list")


@require_GET
@tenant_staff
def ws_token(request: HttpRequest, tenant) -> HttpResponse:
    return JsonResponse({**_socket(request, tenant), "expires_in": int(settings.BILLING_WS_TOKEN_MAX_AGE)})
