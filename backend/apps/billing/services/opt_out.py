"""Opt-out (LGPD): the tenant's suppression list, and the one answer to a customer who asks to stop.

Recognising the request is the reply classifier's job (`apps.chat.services.reply_intents`,
intent `opt_out`: whole-message phrases, so "quero parar de pagar juros" never unsubscribes
anyone); `inbound_messages` calls `suppress` when it says so.

The confirmation (BillingConfig.opt_out_confirmation) is sent once per suppression, after the
webhook's transaction commits, in a short-lived thread (BILLING_OPT_OUT_CONFIRMATION_ASYNC), so
the provider call never delays the webhook's 200. It is best effort: if the process dies in
between, the number stays suppressed and only the courtesy message is lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import Q

from apps.billing.models import BillingConfig, SuppressedPhone
from apps.common.keyed_hash import phone_hash
from apps.contacts.utils import mask_phone
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- suppression list
# A row names its phone in clear, or — once the person's data was erased (apps/privacy) — only
# by its keyed hash. Every check below (and the two SQL statements that repeat it: ingest's
# and the worker's start_sending) matches either, so an erased opt-out is still honoured.
def suppress(
    *, tenant: Tenant, phone: str, reason: str = "", source: str = SuppressedPhone.Source.INBOUND_REPLY
) -> tuple[SuppressedPhone, bool]:
    """Put an E.164 phone on the tenant's list; `(row, created)`. Idempotent and race-safe."""
    erased = SuppressedPhone.objects.filter(tenant=tenant, phone_hash=phone_hash(phone)).first()
    if erased is not None:
        return erased, False
    try:
        with transaction.atomic():
            return SuppressedPhone.objects.get_or_create(
                tenant=tenant, phone=phone, defaults={"reason": reason[:200], "source": source}
            )
    except IntegrityError:  # a concurrent reply inserted it first
        return SuppressedPhone.objects.get(tenant=tenant, phone=phone), False


def is_suppressed(*, tenant: Tenant, phone: str) -> bool:
    """For the worker, right before a send (a stop request can arrive while a queue runs)."""
    return SuppressedPhone.objects.filter(Q(phone=phone) | Q(phone_hash=phone_hash(phone)), tenant=tenant).exists()


def suppressed_phones(*, tenant: Tenant, phones: Iterable[str]) -> set[str]:
    """Which of `phones` are suppressed: one query, for ingest."""
    by_hash = {phone_hash(phone): phone for phone in set(phones) if phone}
    if not by_hash:
        return set()
    rows = SuppressedPhone.objects.filter(
        Q(phone__in=list(by_hash.values())) | Q(phone_hash__in=list(by_hash)), tenant=tenant
    ).values_list("phone", "phone_hash")
    return {phone if phone is not None else by_hash[str(hashed)] for phone, hashed in rows}


# ----------------------------------------------------------------------------- confirmation
def schedule_confirmation(*, tenant: Tenant, instance_id: int, phone: str) -> None:
    """After the current transaction commits, answer the customer once (see module docstring)."""
    config = BillingConfig.objects.filter(tenant=tenant).only("opt_out_confirmation").first()
    text = (config.opt_out_confirmation if config is not None else "").strip()
    if not text:
        return

    def dispatch() -> None:
        if settings.BILLING_OPT_OUT_CONFIRMATION_ASYNC:
            threading.Thread(
                target=_send_confirmation_in_thread,
                args=(instance_id, phone, text),
                name="billing-opt-out-confirmation",
                daemon=True,
            ).start()
        else:
            send_confirmation(instance_id=instance_id, phone=phone, text=text)

    transaction.on_commit(dispatch)


def _send_confirmation_in_thread(instance_id: int, phone: str, text: str) -> None:
    try:
        send_confirmation(instance_id=instance_id, phone=phone, text=text)
    except Exception:  # the thread's top: log it (masked) rather than let threading print it
        logger.exception("opt-out confirmation crashed", extra={"instance_id": instance_id, "phone": mask_phone(phone)})
    finally:
        connections.close_all()  # this thread's connections only: they would outlive it otherwise


def send_confirmation(*, instance_id: int, phone: str, text: str) -> bool:
    """One attempt (`max_retries=0`); the answer is kept in the chat history. Never raises for
    provider trouble: a missing courtesy message must not undo the suppression."""
    from apps.billing.services.chat_history import record_outbound_text
    from apps.common.services.provider import client_for
    from apps.common.services.provider_errors import ProviderError
    from apps.connections.models import WhatsAppInstance

    instance = WhatsAppInstance.objects.filter(pk=instance_id).first()
    if instance is None:
        return False
    context = {"instance_id": instance_id, "phone": mask_phone(phone), "tenant_id": str(instance.tenant_id)}
    try:
        result = client_for(instance).send(phone, text, max_retries=0)
    except ProviderError as error:
        logger.warning("opt-out confirmation not sent", extra={**context, "error_code": error.code})
        return False
    record_outbound_text(
        instance=instance, phone=phone, text=text, provider_message_id=result.provider_message_id, source="opt_out"
    )
    logger.info("opt-out confirmation sent", extra=context)
    return True
