"""`/api/v1/billing/conversations`: read conversations, answer them, resolve them.

Same authentication, throttles, error shape and tenant scoping as the send endpoints (a
conversation of another tenant is a 404, like one that does not exist). Thin views: validate,
call one selector or service, serialize.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from apps.billing.authentication import KeyedRequest
from apps.billing.constants import TemplateType
from apps.billing.services.reply_sending import send_staff_reply
from apps.billing.views import BillingAPIView
from apps.chat.models import Conversation
from apps.chat.services import conversations
from apps.common.exceptions import ApplicationError
from apps.contacts.utils import PhoneNumberError, normalize_phone

from . import api_docs
from .live import publish_conversation_update
from .serializers import (
    ConversationDetailSerializer,
    ConversationQuerySerializer,
    ConversationSerializer,
    ReplyQueuedSerializer,
    ResolveSerializer,
    StaffReplySerializer,
)
from .thread import build_thread


def conversation_for(request: KeyedRequest, conversation_id: str) -> Conversation:
    try:
        return conversations.conversation_get(tenant=request.auth.tenant, conversation_id=conversation_id)
    except conversations.ConversationNotFound:
        raise ApplicationError("not_found", "Conversation not found.", status=404) from None


class ConversationPagination(CursorPagination):
    ordering = ("-last_message_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ConversationListView(BillingAPIView):
    @extend_schema(
        operation_id="conversation_list",
        summary="Conversations, latest activity first (paginated)",
        tags=["conversations"],
        parameters=[
            OpenApiParameter(name, type_, description=text)
            for name, type_, text in (
                ("phone", str, "Any common format"),
                ("status", str, "open | closed"),
                ("needs_attention", bool, "Waiting for a person"),
                ("intent", str, "Of the latest customer message"),
                ("date_from", str, "YYYY-MM-DD, tenant's calendar"),
                ("date_to", str, "YYYY-MM-DD, tenant's calendar"),
                ("cursor", str, ""),
                ("page_size", int, "1..200"),
            )
        ],
        responses={200: ConversationSerializer(many=True), **api_docs.ERROR_RESPONSES_LIST},
        examples=[
            OpenApiExample(
                "page",
                response_only=True,
                value={"next": None, "previous": None, "results": [api_docs.CONVERSATION_EXAMPLE]},
            )
        ],
    )
    def get(self, request: KeyedRequest) -> Response:
        query = ConversationQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        filters = {key: value for key, value in query.validated_data.items() if key not in ("cursor", "page_size")}
        if filters.get("phone"):
            try:
                filters["phone"] = normalize_phone(filters["phone"])
            except PhoneNumberError as exc:
                raise ApplicationError("invalid_phone", exc.message, status=400) from None
        rows = conversations.conversation_list(
            tenant=request.auth.tenant, filters=conversations.ConversationFilters(**filters)
        )
        paginator = ConversationPagination()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response(ConversationSerializer(page, many=True).data)


class ConversationDetailView(BillingAPIView):
    @extend_schema(
        operation_id="conversation_detail",
        summary="A conversation and its latest messages",
        tags=["conversations"],
        responses={200: ConversationDetailSerializer, **api_docs.ERROR_RESPONSES_READ},
        examples=[OpenApiExample("thread", response_only=True, value=api_docs.DETAIL_EXAMPLE)],
    )
    def get(self, request: KeyedRequest, conversation_id: str) -> Response:
        conversation = conversation_for(request, conversation_id)
        return Response(ConversationDetailSerializer(build_thread(conversation=conversation)).data)


class ConversationMessagesView(BillingAPIView):
    @extend_schema(
        operation_id="conversation_reply",
        summary="Answer a conversation (a person's reply)",
        tags=["conversations"],
        description=(
            "Queues the text as a one-contact notification queue: the same pipeline, pace, provider and delivery "
            "tracking (status_url, callbacks) as any send. Needs a key allowed to send notifications. A phone on "
            "the suppression list is refused (422 opted_out)."
        ),
        request=StaffReplySerializer,
        responses={202: ReplyQueuedSerializer, 200: ReplyQueuedSerializer, **api_docs.ERROR_RESPONSES_REPLY},
        examples=[
            OpenApiExample("reply", request_only=True, value={"text": "Olá, Maria! Podemos parcelar em 3x."}),
            OpenApiExample("queued", response_only=True, value=api_docs.REPLY_QUEUED_EXAMPLE, status_codes=["202"]),
        ],
    )
    def post(self, request: KeyedRequest, conversation_id: str) -> Response:
        key = request.auth
        conversation = conversation_for(request, conversation_id)
        if not key.allows_type(TemplateType.NOTIFICATION):
            raise ApplicationError(
                "template_type_not_allowed",
                "This API key may not send notification messages, which replies are.",
                status=403,
            )
        body = StaffReplySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        queued = send_staff_reply(
            conversation=conversation,
            text=body.validated_data["text"],
            author_api_key=key,
            idempotency_key=body.validated_data.get("external_id", ""),
        )
        publish_conversation_update(tenant_id=key.tenant_id, conversation_id=conversation.pk)
        data = {
            "reply_id": queued.reply.pk,
            "conversation_id": conversation.pk,
            "kind": queued.reply.kind,
            "queue_id": queued.queue_id,
            "status_url": f"/api/v1/billing/queue/{queued.queue_id}/status",
        }
        return Response(ReplyQueuedSerializer(data).data, status=202 if queued.created else 200)


class ConversationResolveView(BillingAPIView):
    @extend_schema(
        operation_id="conversation_resolve",
        summary="Resolve: no longer needs a person (closed by an agent)",
        tags=["conversations"],
        request=None,
        responses={200: ConversationSerializer, **api_docs.ERROR_RESPONSES_READ},
        examples=[
            OpenApiExample(
                "resolved",
                response_only=True,
                value={
                    **api_docs.CONVERSATION_EXAMPLE,
                    "status": "closed",
                    "needs_attention": False,
                    "attention_reason": "",
                    "closed_by": "agent",
                    "closed_at": "2026-12-01T13:20:00Z",
                },
            )
        ],
    )
    def post(self, request: KeyedRequest, conversation_id: str) -> Response:
        ResolveSerializer(data=request.data or {}).is_valid(raise_exception=True)
        conversation = conversations.resolve(conversation=conversation_for(request, conversation_id))
        publish_conversation_update(tenant_id=conversation.tenant_id, conversation_id=conversation.pk)
        return Response(ConversationSerializer(conversation).data)
