"""Opt-out (LGPD): recognise "stop messaging me", keep the tenant's suppression list, answer once.

Recognition is whole-intent: the *entire* reply, once normalised (case, accents, punctuation,
emoji and polite filler words removed), must be one of the stop phrasings below. A keyword
inside a longer sentence is not enough, so "quero parar de pagar juros" or "vou sair mais cedo"
never unsubscribe anyone, while "SAIR", "Parar!", "não quero mais receber" or "STOP" do. False
negatives cost little (the customer writes again, or the tenant's staff add the number in the
admin); a false positive silences a debtor who only asked a question.

The confirmation (BillingConfig.opt_out_confirmation) is sent once per suppression, after the
webhook's transaction commits, in a short-lived thread (BILLING_OPT_OUT_CONFIRMATION_ASYNC), so
the provider call never delays the webhook's 200. It is best effort: if the process dies in
between, the number stays suppressed and only the courtesy message is lost.
"""
from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, connections, transaction

from apps.billing.models import BillingConfig, SuppressedPhone
from apps.contacts.utils import mask_phone
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)

# Polite words around the request: "sair, por favor", "obrigado, pode parar".
_FILLERS = (
    r"por favor|por gentileza|pfv|pf|pls|please|plz|obrigad[oa]|obg|grat[oa]|valeu|ok|okay|"
    r"oi|ola|bom dia|boa tarde|boa noite|hi|hello|thanks|thank you|pode|podem|favor|ja"
)
_FILLER_EDGES = re.compile(rf"^(?:(?:{_FILLERS})\s+)+|(?:\s+(?:{_FILLERS}))+$")

# Building blocks. Optional parts always carry their own leading space: "(?: mais)?".
_MSGS = (r"(?:(?:essas|estas|as|suas|sua|tuas|nenhuma|mais) )?(?:mensagens|mensagem|msgs|msg|cobrancas|cobranca|"
         r"avisos|aviso|lembretes|notificacoes)(?: de (?:cobranca|voces|vcs))?")
_MSGS_OR_THIS = rf"(?:{_MSGS}|isso|isto|nada)"
_WHERE = r"(?:por aqui|aqui|no whatsapp|no zap|neste numero|nesse numero|de voces|de vcs|pra mim|para mim)"
_LIST = (r"(?:da|dessa|desta|de sua|da sua|do) (?:lista|cadastro|contatos|base)"
         r"(?: de (?:contatos|mensagens|envio|envios|cobranca))?")
_NUMBER = r"(?:o )?meu (?:numero|contato|telefone|celular)"
_WANT = r"(?:eu )?(?:quero|queria|gostaria de|desejo|preciso)"
_DONT_WANT = r"(?:eu )?(?:nao|n) (?:quero|desejo|gostaria de|aceito)"
_SEND = r"(?:mande|mandem|manda|envie|enviem|envia|perturbe|perturbem|incomode|incomodem)"

# Each pattern must match the whole normalised reply.
_OPT_OUT_PATTERNS = [
    # Keywords alone (the SMS convention), possibly repeated: "SAIR", "stop stop".
    r"(?:sair|parar|pare|parem|para|stop|cancelar|cancela|descadastrar|descadastre|descadastro|remover|"
    r"unsubscribe|optout|opt out|bloquear|end|quit|chega)(?: (?:sair|parar|pare|stop|cancelar|chega))*",
    # "quero sair", "gostaria de sair da lista", "quero me descadastrar", "quero cancelar as mensagens".
    rf"{_WANT} (?:sair|parar|me descadastrar|descadastrar|ser removid[oa]|ser excluid[oa]|me remover)"
    rf"(?: (?:{_LIST}|de receber(?: {_MSGS})?|das mensagens|dessas mensagens|disso|daqui|desse numero))?",
    rf"{_WANT} (?:cancelar|parar|bloquear) (?:o recebimento|o envio|{_MSGS})(?: (?:de mensagens|{_WHERE}))?",
    # "não quero mais", "não quero mais receber", "não quero receber mais mensagens".
    rf"{_DONT_WANT} mais",
    rf"{_DONT_WANT}(?: mais)? receber(?: mais)?(?: {_MSGS})?(?: mais)?(?: {_WHERE})?(?: mais)?",
    rf"{_DONT_WANT}(?: mais)? {_MSGS}(?: mais)?(?: {_WHERE})?",
    # "não me mande mais mensagens", "não me enviem mais nada", "nao mande mais".
    rf"(?:nao|n)(?: me)? {_SEND}(?: mais)?(?: {_MSGS_OR_THIS})?(?: mais)?(?: {_WHERE})?",
    # "parem de me mandar mensagens", "pare de enviar mensagem", "para de me mandar isso".
    rf"(?:pare|parem|para|parar) de(?: me)? (?:mandar|enviar|mandarem|enviarem)(?: mais)?"
    rf"(?: {_MSGS_OR_THIS})?(?: {_WHERE})?",
    # "me tire da lista", "me remova da sua lista", "tirem meu número da lista", "remover meu numero".
    rf"(?:me )?(?:tire|tira|tirem|remova|removam|exclua|exclui|excluam|retire|retirem|descadastre|descadastrem)"
    rf"(?: me)?(?: {_NUMBER})?(?: {_LIST})?",
    rf"(?:{_WANT} )?(?:remover|excluir|tirar|retirar|descadastrar) {_NUMBER}(?: {_LIST})?",
    rf"chega de {_MSGS_OR_THIS}(?: {_WHERE})?",
    # English.
    r"(?:please )?stop(?: (?:it|now|messaging me|messaging|texting me|texting|sending(?: me)?(?: messages| texts)?|"
    r"all messages|these messages|the messages|contacting me))?(?: please)?",
    r"(?:please )?unsubscribe(?: me)?(?: now)?",
    r"(?:please )?(?:remove|take) me (?:off|from)(?: (?:your|the|this|ur) (?:list|mailing list|contact list))?",
    r"(?:please )?remove me",
    r"(?:i )?(?:dont|do not) want (?:to (?:receive|get) )?(?:any )?(?:more )?(?:messages|texts|these messages)"
    r"(?: anymore| any more)?",
    r"(?:i )?(?:want|would like) to (?:unsubscribe|opt out|stop receiving(?: (?:messages|these messages|texts))?)",
    r"(?:dont|do not) (?:message|text|contact) me(?: again| anymore| any more)?",
    r"no more (?:messages|texts)",
]
_OPT_OUT = re.compile("|".join(f"(?:{pattern})" for pattern in _OPT_OUT_PATTERNS))
_MAX_LENGTH = 160  # a stop request is short; long messages are conversations


def normalize_text(text: str) -> str:
    """Lowercase ASCII words separated by single spaces: accents, punctuation and emoji gone."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    ascii_text = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    ascii_text = ascii_text.replace("'", "").replace("\u2019", "")  # don't → dont
    words = re.sub(r"[^a-z0-9]+", " ", ascii_text)
    return re.sub(r"\s+", " ", words).strip()


def is_opt_out_request(text: str) -> bool:
    """Whether the whole reply asks to stop receiving messages (see the module docstring)."""
    if not text or len(text) > _MAX_LENGTH * 2:
        return False
    normalized = normalize_text(text)
    if not normalized or len(normalized) > _MAX_LENGTH:
        return False
    stripped = _FILLER_EDGES.sub("", normalized).strip()
    return bool(_OPT_OUT.fullmatch(stripped or normalized))


# ----------------------------------------------------------------------------- suppression list
def suppress(
    *, tenant: Tenant, phone: str, reason: str = "", source: str = SuppressedPhone.Source.INBOUND_REPLY
) -> tuple[SuppressedPhone, bool]:
    """Put an E.164 phone on the tenant's list; `(row, created)`. Idempotent and race-safe."""
    try:
        with transaction.atomic():
            return SuppressedPhone.objects.get_or_create(
                tenant=tenant, phone=phone, defaults={"reason": reason[:200], "source": source}
            )
    except IntegrityError:  # a concurrent reply inserted it first
        return SuppressedPhone.objects.get(tenant=tenant, phone=phone), False


def is_suppressed(*, tenant: Tenant, phone: str) -> bool:
    """For the worker, right before a send (a stop request can arrive while a queue runs)."""
    return SuppressedPhone.objects.filter(tenant=tenant, phone=phone).exists()


def suppressed_phones(*, tenant: Tenant, phones: Iterable[str]) -> set[str]:
    """Which of `phones` are suppressed: one query, for ingest."""
    wanted = list({phone for phone in phones if phone})
    if not wanted:
        return set()
    return set(SuppressedPhone.objects.filter(tenant=tenant, phone__in=wanted).values_list("phone", flat=True))


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
                target=_send_confirmation_in_thread, args=(instance_id, phone, text),
                name="billing-opt-out-confirmation", daemon=True,
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
    from apps.billing.services.billing_send_service import record_outbound_text
    from apps.common.services.evolution_api_service import EvolutionAPIError, EvolutionAPIService
    from apps.connections.models import WhatsAppInstance

    instance = WhatsAppInstance.objects.filter(pk=instance_id).first()
    if instance is None:
        return False
    context = {"instance_id": instance_id, "phone": mask_phone(phone), "tenant_id": str(instance.tenant_id)}
    try:
        result = EvolutionAPIService(instance).send(phone, text, max_retries=0)
    except EvolutionAPIError as error:
        logger.warning("opt-out confirmation not sent", extra={**context, "error_code": error.code})
        return False
    record_outbound_text(instance=instance, phone=phone, text=text, provider_message_id=result.provider_message_id,
                         source="opt_out")
    logger.info("opt-out confirmation sent", extra=context)
    return True
