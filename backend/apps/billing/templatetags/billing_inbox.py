"""Words the staff inbox shows for codes (pt-BR)."""

from __future__ import annotations

from django import template

register = template.Library()

INTENT_LABELS = {
    "opt_out": "Pediu para sair",
    "claims_paid": "Diz que pagou",
    "negotiate": "Quer negociar",
    "payment_info": "Pediu dados de pagamento",
    "wrong_person": "Pessoa errada",
    "talk_to_human": "Quer falar com alguém",
    "greeting": "Saudação",
    "other": "Outro",
}
STATUS_LABELS = {
    "pending": "na fila",
    "pending_retry": "aguardando",
    "sending": "enviando",
    "sent": "enviada",
    "delivered": "entregue",
    "read": "lida",
    "received": "recebida",
    "failed": "falhou",
    "cancelled": "cancelada",
    "skipped": "não enviada",
    "open": "aberta",
    "closed": "fechada",
}


@register.filter
def intent_label(code: str) -> str:
    return INTENT_LABELS.get(code or "", code or "")


@register.filter
def status_label(code: str) -> str:
    return STATUS_LABELS.get(code or "", code or "")
