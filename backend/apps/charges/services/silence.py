"""Stop a charge's messages that are queued but not sent yet ("paid means silent").

The contacts are found through the charge's step runs and skipped by billing's
`skip_unsent_contacts`, so the send worker's own per-message check refuses them, even those
it already claimed. A message already handed to the provider (`sending`) cannot be called
back: it keeps its real outcome.
"""

from __future__ import annotations

from collections.abc import Iterable

from apps.billing.constants import UNSENT_CONTACT_STATUSES
from apps.billing.services.contact_skip import skip_unsent_contacts
from apps.charges.constants import StepRunStatus
from apps.charges.models import ChargeStepRun
from apps.tenancy.models import Tenant


def silence_charges(*, tenant: Tenant, charge_ids: Iterable[int], code: str, reason: str) -> int:
    """Skip every unsent message of these charges with `code`/`reason`; how many were skipped."""
    ids = list(charge_ids)
    if not ids:
        return 0
    contact_ids = list(
        ChargeStepRun.objects.filter(
            tenant=tenant,
            charge_id__in=ids,
            status=StepRunStatus.QUEUED,
            billing_contact__status__in=UNSENT_CONTACT_STATUSES,
        ).values_list("billing_contact_id", flat=True)
    )
    return skip_unsent_contacts(tenant=tenant, contact_ids=contact_ids, code=code, reason=reason)
