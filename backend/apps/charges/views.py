"""Charges API: thin views — validate input, call one service or selector, serialize. Same
authentication (X-Billing-API-Key), throttles and error shape as the send endpoints."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.response import Response

from apps.audit.services import Actor
from apps.billing.authentication import KeyedRequest
from apps.billing.constants import TemplateType
from apps.billing.views import BillingAPIView
from apps.billing.views import (
    ContactPagination as ChargePagination,  # by id, 100 a page, up to 1000
)
from apps.charges import api_docs
from apps.charges.constants import ChangeSource
from apps.charges.models import ChargeSettings
from apps.charges.selectors import cadences_list, charge_get, charges_list
from apps.charges.serializers import (
    CadenceInputSerializer,
    CadenceReplaceSerializer,
    CadenceSerializer,
    ChargeActionSerializer,
    ChargeDetailSerializer,
    ChargeSerializer,
    ChargesQuerySerializer,
    ChargesUpsertSerializer,
    PayChargeSerializer,
    RecoveryQuerySerializer,
    UpsertResultSerializer,
)
from apps.charges.services.cadences import (
    cadence_create,
    cadence_delete,
    cadence_get,
    cadence_replace,
)
from apps.charges.services.charge_status import ACTION_TARGET, change_charge_status
from apps.charges.services.charge_upsert import upsert_charges
from apps.charges.services.recovery_report import recovery_report
from apps.charges.services.timeline import charge_plan, charge_timeline
from apps.common.exceptions import ApplicationError


def require_collection_key(request: KeyedRequest) -> None:
    """Charges and cadences make collection messages: the key must allow overdue and upcoming."""
    key = request.auth
    if not (key.allows_type(TemplateType.OVERDUE) and key.allows_type(TemplateType.UPCOMING)):
        raise ApplicationError(
            "template_type_not_allowed", "This API key may not send overdue and upcoming messages.", status=403
        )


class ChargesView(BillingAPIView):
    @extend_schema(
        operation_id="charges_list",
        summary="List charges (paginated)",
        tags=["charges"],
        parameters=[
            OpenApiParameter("status", str),
            OpenApiParameter("due_from", str),
            OpenApiParameter("due_to", str),
            OpenApiParameter("debtor", str),
            OpenApiParameter("cursor", str),
            OpenApiParameter("page_size", int),
        ],
        responses={200: ChargeSerializer(many=True), **api_docs.ERRORS_READ},
    )
    def get(self, request: KeyedRequest) -> Response:
        query = ChargesQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        filters = {k: v for k, v in query.validated_data.items() if k not in ("cursor", "page_size")}
        charges = charges_list(tenant=request.auth.tenant, **filters)
        paginator = ChargePagination()
        page = paginator.paginate_queryset(charges, request, view=self)
        return paginator.get_paginated_response(ChargeSerializer(page, many=True).data)

    @extend_schema(
        operation_id="charges_upsert",
        summary="Create or update up to 10,000 charges",
        tags=["charges"],
        description=api_docs.UPSERT_DESCRIPTION,
        request=ChargesUpsertSerializer,
        responses={200: UpsertResultSerializer, **api_docs.ERRORS_UPSERT},
        examples=[OpenApiExample("charges", value=api_docs.UPSERT_EXAMPLE, request_only=True)],
    )
    def post(self, request: KeyedRequest) -> Response:
        require_collection_key(request)
        serializer = ChargesUpsertSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = upsert_charges(
            tenant=request.auth.tenant,
            charges=serializer.validated_data["charges"],
            strict=serializer.validated_data["strict"],
            source=ChangeSource.API,
        )
        return Response(result.as_dict())


class ChargeDetailView(BillingAPIView):
    @extend_schema(
        operation_id="charge_detail",
        summary="A charge, its cadence plan and its timeline",
        tags=["charges"],
        responses={200: ChargeDetailSerializer, **api_docs.ERRORS_READ},
    )
    def get(self, request: KeyedRequest, external_id: str) -> Response:
        charge = charge_get(tenant=request.auth.tenant, external_id=external_id)
        charge.plan = charge_plan(charge, now=timezone.now())
        charge.timeline = charge_timeline(charge)
        return Response(ChargeDetailSerializer(charge).data)


class ChargeActionView(BillingAPIView):
    action: str = ""

    def post(self, request: KeyedRequest, external_id: str) -> Response:
        charge = charge_get(tenant=request.auth.tenant, external_id=external_id)
        serializer_class = PayChargeSerializer if self.action == "pay" else ChargeActionSerializer
        serializer = serializer_class(data=request.data if request.data else {})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        change = change_charge_status(
            charge=charge,
            target=ACTION_TARGET[self.action],
            source=ChangeSource.API,
            occurred_at=data.get("paid_at"),
            paid_amount=data.get("paid_amount"),
            reference=data.get("reference", ""),
            reason=data.get("reason", ""),
        )
        return Response(ChargeSerializer(change.charge).data)


def _action_view(action: str, serializer_class: type) -> type[ChargeActionView]:
    def post(self: ChargeActionView, request: KeyedRequest, external_id: str) -> Response:
        return ChargeActionView.post(self, request, external_id)

    post = extend_schema(
        operation_id=f"charge_{action.replace('-', '_')}",
        summary=api_docs.ACTION_SUMMARY[action],
        tags=["charges"],
        request=serializer_class,
        responses={200: ChargeSerializer, **api_docs.ERRORS_ACTION},
    )(post)
    return type(f"Charge{action.title().replace('-', '')}View", (ChargeActionView,), {"action": action, "post": post})


PayChargeView = _action_view("pay", PayChargeSerializer)
CancelChargeView = _action_view("cancel", ChargeActionSerializer)
WriteOffChargeView = _action_view("write-off", ChargeActionSerializer)
ReopenChargeView = _action_view("reopen", ChargeActionSerializer)


def _cadence_context(request: KeyedRequest) -> dict:
    return {"default_cadence_id": ChargeSettings.for_tenant(request.auth.tenant).default_cadence_id}


class CadencesView(BillingAPIView):
    @extend_schema(
        operation_id="cadences_list",
        summary="The tenant's cadences",
        tags=["cadences"],
        responses={200: CadenceSerializer(many=True), **api_docs.ERRORS_READ},
    )
    def get(self, request: KeyedRequest) -> Response:
        cadences = cadences_list(tenant=request.auth.tenant)
        return Response(CadenceSerializer(cadences, many=True, context=_cadence_context(request)).data)

    @extend_schema(
        operation_id="cadences_create",
        summary="Create a cadence",
        tags=["cadences"],
        request=CadenceInputSerializer,
        responses={201: CadenceSerializer, **api_docs.ERRORS_CADENCE},
        examples=[OpenApiExample("cadence", value=api_docs.CADENCE_EXAMPLE, request_only=True)],
    )
    def post(self, request: KeyedRequest) -> Response:
        require_collection_key(request)
        serializer = CadenceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cadence = cadence_create(
            tenant=request.auth.tenant,
            name=serializer.validated_data["name"],
            steps=serializer.step_specs(),
            default=serializer.validated_data["default"],
            actor=Actor.of_request(request),
        )
        return Response(CadenceSerializer(cadence, context=_cadence_context(request)).data, status=201)


class CadenceDetailView(BillingAPIView):
    @extend_schema(
        operation_id="cadence_detail",
        summary="A cadence",
        tags=["cadences"],
        responses={200: CadenceSerializer, **api_docs.ERRORS_READ},
    )
    def get(self, request: KeyedRequest, name: str) -> Response:
        cadence = cadence_get(tenant=request.auth.tenant, name=name)
        return Response(CadenceSerializer(cadence, context=_cadence_context(request)).data)

    @extend_schema(
        operation_id="cadence_replace",
        summary="Replace a cadence's steps (and rename it)",
        tags=["cadences"],
        request=CadenceReplaceSerializer,
        responses={200: CadenceSerializer, **api_docs.ERRORS_CADENCE},
    )
    def put(self, request: KeyedRequest, name: str) -> Response:
        require_collection_key(request)
        cadence = cadence_get(tenant=request.auth.tenant, name=name)
        serializer = CadenceReplaceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cadence = cadence_replace(
            cadence=cadence,
            steps=serializer.step_specs(),
            default=serializer.validated_data["default"],
            new_name=serializer.validated_data.get("name"),
            actor=Actor.of_request(request),
        )
        return Response(CadenceSerializer(cadence, context=_cadence_context(request)).data)

    @extend_schema(
        operation_id="cadence_delete",
        summary="Delete a cadence no open charge follows",
        tags=["cadences"],
        responses={204: None, **api_docs.ERRORS_CADENCE_DELETE},
    )
    def delete(self, request: KeyedRequest, name: str) -> Response:
        require_collection_key(request)
        cadence_delete(cadence=cadence_get(tenant=request.auth.tenant, name=name), actor=Actor.of_request(request))
        return Response(status=204)


class RecoveryReportView(BillingAPIView):
    @extend_schema(
        operation_id="recovery_report",
        summary="Recovery report for a period",
        tags=["reports"],
        parameters=[
            OpenApiParameter("date_from", str, required=True),
            OpenApiParameter("date_to", str, required=True),
            OpenApiParameter("window_days", int),
        ],
        responses={200: dict, **api_docs.ERRORS_READ},
        examples=[OpenApiExample("report", value=api_docs.REPORT_EXAMPLE, response_only=True)],
    )
    def get(self, request: KeyedRequest) -> Response:
        query = RecoveryQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        tenant = request.auth.tenant
        window = query.validated_data.get("window_days") or ChargeSettings.for_tenant(tenant).conversion_window_days
        return Response(recovery_report(tenant=tenant, period=query.validated_data["period"], window_days=window))
