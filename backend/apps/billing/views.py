"""Public billing API: thin views — validate input, call one service or selector, serialize."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.services import Actor
from apps.common.exceptions import ApplicationError

from . import api_docs
from .authentication import BillingAPIKeyAuthentication, KeyedRequest
from .constants import ContactStatus, TemplateType
from .permissions import HasBillingAPIKey
from .selectors import queue_contacts, queue_eta, queue_get
from .serializers import (
    ContactsQuerySerializer,
    ContactStatusSerializer,
    QueueControlSerializer,
    QueueStatusSerializer,
    SendRequestSerializer,
    SendResponseSerializer,
)
from .services.billing_campaign_service import BillingCampaignService
from .services.queue_control import queue_control
from .throttling import BillingAPIKeyThrottle


class BillingAPIView(APIView):
    authentication_classes = [BillingAPIKeyAuthentication]
    permission_classes = [HasBillingAPIKey]
    throttle_classes = [BillingAPIKeyThrottle]


class SendView(BillingAPIView):
    template_type: str = ""

    def post(self, request: KeyedRequest) -> Response:
        key = request.auth
        if not key.allows_type(self.template_type):
            raise ApplicationError(
                "template_type_not_allowed", f"This API key may not send {self.template_type} messages.", status=403
            )
        serializer = SendRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = BillingCampaignService(tenant=key.tenant, api_key=key, context=request.tenant_context).ingest(
            template_type=self.template_type, data=serializer.validated_data, raw_payload=request.data
        )
        return Response(result.body, status=result.status_code)


def _send_view(template_type: str, example: dict) -> type[SendView]:
    """One view class per type, each with its own documented `post` (a fresh function, since
    extend_schema annotates the function object it decorates)."""

    def post(self: SendView, request: KeyedRequest) -> Response:
        return SendView.post(self, request)

    post = extend_schema(
        operation_id=f"send_{template_type}",
        summary=f"Queue {template_type} messages",
        description=api_docs.SEND_DESCRIPTION[template_type],
        request=SendRequestSerializer,
        responses={
            202: SendResponseSerializer,
            200: OpenApiResponse(SendResponseSerializer, "Repeat of an earlier request"),
            **api_docs.ERROR_RESPONSES_SEND,
        },
        examples=[
            OpenApiExample(f"{template_type} request", value=example, request_only=True),
            OpenApiExample("accepted", value=api_docs.SEND_RESPONSE_EXAMPLE, response_only=True, status_codes=["202"]),
        ],
        tags=["send"],
    )(post)
    return type(f"Send{template_type.title()}View", (SendView,), {"template_type": template_type, "post": post})


SendOverdueView = _send_view(TemplateType.OVERDUE, api_docs.OVERDUE_EXAMPLE)
SendUpcomingView = _send_view(TemplateType.UPCOMING, api_docs.UPCOMING_EXAMPLE)
SendNotificationView = _send_view(TemplateType.NOTIFICATION, api_docs.NOTIFICATION_EXAMPLE)


class QueueStatusView(BillingAPIView):
    @extend_schema(
        operation_id="queue_status",
        summary="Progress of a queue",
        tags=["queue"],
        responses={200: QueueStatusSerializer, **api_docs.ERROR_RESPONSES_READ},
        examples=[OpenApiExample("running", value=api_docs.STATUS_EXAMPLE, response_only=True)],
    )
    def get(self, request: KeyedRequest, queue_id: str) -> Response:
        queue = queue_get(tenant=request.auth.tenant, queue_id=queue_id)
        queue.eta_value = queue_eta(queue, context=request.tenant_context)
        return Response(QueueStatusSerializer(queue).data)


class QueueControlView(BillingAPIView):
    @extend_schema(
        operation_id="queue_control",
        summary="Pause, resume or cancel a queue",
        tags=["queue"],
        request=QueueControlSerializer,
        responses={200: QueueStatusSerializer, **api_docs.ERROR_RESPONSES_CONTROL},
        examples=[
            OpenApiExample("pause", value={"action": "pause"}, request_only=True),
            OpenApiExample("paused", value=api_docs.PAUSED_EXAMPLE, response_only=True),
        ],
    )
    def post(self, request: KeyedRequest, queue_id: str) -> Response:
        queue = queue_get(tenant=request.auth.tenant, queue_id=queue_id)
        serializer = QueueControlSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        queue = queue_control(queue=queue, action=serializer.validated_data["action"], actor=Actor.of_request(request))
        queue.eta_value = queue_eta(queue, context=request.tenant_context)
        return Response(QueueStatusSerializer(queue).data)


class ContactPagination(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class QueueContactsView(BillingAPIView):
    @extend_schema(
        operation_id="queue_contacts",
        summary="Per-contact status of a queue (paginated)",
        tags=["queue"],
        parameters=[
            OpenApiParameter("status", str, enum=ContactStatus.values),
            OpenApiParameter("external_id", str, description="Your contact id"),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        responses={200: ContactStatusSerializer(many=True), **api_docs.ERROR_RESPONSES_READ},
        examples=[OpenApiExample("page", value=api_docs.CONTACTS_EXAMPLE, response_only=True)],
    )
    def get(self, request: KeyedRequest, queue_id: str) -> Response:
        queue = queue_get(tenant=request.auth.tenant, queue_id=queue_id)
        query = ContactsQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        contacts = queue_contacts(
            queue=queue, status=query.validated_data.get("status"), external_id=query.validated_data.get("external_id")
        )
        paginator = ContactPagination()
        page = paginator.paginate_queryset(contacts, request, view=self)
        return paginator.get_paginated_response(ContactStatusSerializer(page, many=True).data)
