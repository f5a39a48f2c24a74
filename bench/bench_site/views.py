"""The bar to measure the API against: the plainest Django view that writes the rows a
one-contact notification writes (Campaign, BillingCampaign, BillingQueue, CampaignContact,
BillingContact) in one transaction, with the ORM, and answers 202 with the queue id.

No authentication, throttle, validation, idempotency, opt-out check, variation rotation or
broker publish: everything the API adds is what the ratio measures. The tenant, template,
instance and variation ids come from the environment the benchmark starts the server with.
"""

from __future__ import annotations

import json
import os

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.billing.models import BillingCampaign, BillingContact, BillingQueue
from apps.campaigns.models import Campaign, CampaignContact


@csrf_exempt
@require_POST
def bare_insert(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body)
    contact = body["contacts"][0]
    tenant_id, instance_id = os.environ["BENCH_TENANT_ID"], int(os.environ["BENCH_INSTANCE_ID"])
    with transaction.atomic():
        campaign = Campaign.objects.create(
            tenant_id=tenant_id,
            name=f"notification {body['external_id']}",
            source=Campaign.Source.BILLING,
            total_contacts=1,
        )
        billing_campaign = BillingCampaign.objects.create(
            tenant_id=tenant_id,
            campaign=campaign,
            template_id=os.environ["BENCH_TEMPLATE_ID"],
            template_type="notification",
            external_id=body["external_id"],
            instance_id=instance_id,
        )
        queue = BillingQueue.objects.create(
            tenant_id=tenant_id,
            billing_campaign=billing_campaign,
            template_type="notification",
            instance_id=instance_id,
            priority=1,
            total_contacts=1,
        )
        campaign_contact = CampaignContact.objects.create(
            tenant_id=tenant_id, campaign=campaign, phone=contact["phone"], name=contact["name"]
        )
        BillingContact.objects.create(
            tenant_id=tenant_id,
            billing_campaign=billing_campaign,
            queue=queue,
            campaign_contact=campaign_contact,
            variation_id=int(os.environ["BENCH_VARIATION_ID"]),
            phone=contact["phone"],
            name=contact["name"],
            variables=contact.get("variables") or {},
        )
    return JsonResponse({"queue_id": str(queue.pk)}, status=202)
