"""Data-subject requests through the billing API (same key, throttles and error shape)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response

from apps.audit.services import Actor
from apps.billing.authentication import KeyedRequest
from apps.billing.views import BillingAPIView

from . import api_docs
from .services.data_subject_requests import erase_request, export_request

PHONE = OpenApiParameter(
    "phone",
    str,
    OpenApiParameter.PATH,
    description="The person's phone, in any common writing (URL-encoded), e.g. %2B5511987654321",
)


class DataSubjectView(BillingAPIView):
    @extend_schema(
        operation_id="data_subject_export",
        summary="Everything held about a phone (LGPD access)",
        tags=["data subjects"],
        parameters=[PHONE],
        description=api_docs.EXPORT_DESCRIPTION,
        responses={200: OpenApiResponse(dict, "The document"), **api_docs.ERRORS},
        examples=[OpenApiExample("document", value=api_docs.EXPORT_EXAMPLE, response_only=True)],
    )
    def get(self, request: KeyedRequest, phone: str) -> Response:
        document = export_request(tenant=request.auth.tenant, raw_phone=phone, actor=Actor.of_request(request))
        return Response(document, headers={"Cache-Control": "no-store"})

    @extend_schema(
        operation_id="data_subject_erase",
        summary="Erase what is held about a phone (LGPD erasure)",
        tags=["data subjects"],
        parameters=[PHONE],
        description=api_docs.ERASE_DESCRIPTION,
        responses={200: OpenApiResponse(dict, "Rows changed per table"), **api_docs.ERRORS_ERASE},
        examples=[OpenApiExample("erased", value=api_docs.ERASE_EXAMPLE, response_only=True)],
    )
    def delete(self, request: KeyedRequest, phone: str) -> Response:
        counts = erase_request(tenant=request.auth.tenant, raw_phone=phone, actor=Actor.of_request(request))
        return Response({"erased": counts})
