"""Default Portuguese message texts for a new tenant, and the sample data the admin preview
renders templates with.

The defaults print without `?` only what the send worker always has for their type (amount
and due date with their computed days for `overdue`/`upcoming`; `message` for
`notification`; the creditor's legal name and CPF/CNPJ, `creditor_name` and
`creditor_document` from the tenant, which every collection message must print: CDC art.
42-A, see apps/tenancy/creditor.py); the customer's name, the company name and the payment link are inside
`{{#if}}` blocks, so a request that omits them still renders a correct message.

`sample_variables` goes through `BillingDateCalculator.enrich`, the same call the worker makes
before each send, so the preview shows exactly the shapes a real message gets
(`amount` = "R$ 1.234,56", `due_date` = "dd/mm/aaaa", `days_overdue` = 5, ...).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from .date_calculator import BillingDateCalculator

TEMPLATE_TYPES = ("overdue", "upcoming", "notification")

_OVERDUE = [
    """Olá{{#if first_name}}, {{first_name}}{{/if}}! Tudo bem?

Consta em aberto a fatura de *{{amount|money}}*, com vencimento em *{{due_date|date}}*{{#if days_overdue}} (há {{days_overdue|days}}){{/if}}.

{{#if payment_link}}
Para regularizar, acesse: {{payment_link}}

{{/if}}
Se o pagamento já foi feito, por favor desconsidere esta mensagem.
{{#if company_name}}

_{{company_name}}_
{{/if}}""",
    """{{#if first_name}}{{first_name}}, tudo bem?{{else}}Olá, tudo bem?{{/if}}

Ainda não identificamos o pagamento de *{{amount|money}}* que venceu em {{due_date|date}}{{#if days_overdue}}, e ele já está com {{days_overdue|days}} de atraso{{/if}}.

{{#if payment_link}}
Você pode pagar agora pelo link: {{payment_link}}

{{/if}}
Qualquer dúvida, é só responder esta mensagem.""",
    """Olá{{#if first_name}}, {{first_name}}{{/if}}.
{{#if company_name}}
Aqui é da *{{company_name}}*.
{{/if}}

Sua parcela de *{{amount|money}}* venceu em *{{due_date|date}}* e continua em aberto.
{{#if payment_link}}
Link para pagamento: {{payment_link}}
{{/if}}

Se precisar negociar, responda esta mensagem que a gente ajuda.""",
]

_UPCOMING = [
    """Olá{{#if first_name}}, {{first_name}}{{/if}}! 😊

{{#if is_due_today}}
Lembrete: a fatura de *{{amount|money}}* vence *hoje* ({{due_date|date}}).
{{else}}
Lembrete: a fatura de *{{amount|money}}* vence em *{{due_date|date}}*{{#if days_until_due}} (daqui a {{days_until_due|days}}){{/if}}.
{{/if}}

{{#if payment_link}}
Para pagar, acesse: {{payment_link}}

{{/if}}
Se já pagou, desconsidere esta mensagem.""",
    """{{#if first_name}}{{first_name}}, passando{{else}}Passando{{/if}} para lembrar do vencimento da sua fatura:

Valor: *{{amount|money}}*
Vencimento: *{{due_date|date}}*{{#if is_due_today}} (hoje){{/if}}
{{#if payment_link}}
Pagamento: {{payment_link}}
{{/if}}

Pagando em dia você evita juros e multa.""",
    """Olá{{#if first_name}}, {{first_name}}{{/if}}.
{{#if company_name}}
A *{{company_name}}* lembra: sua parcela de *{{amount|money}}* vence em {{due_date|date}}.
{{else}}
Lembrete: sua parcela de *{{amount|money}}* vence em {{due_date|date}}.
{{/if}}
{{#if payment_link}}

Link para pagamento: {{payment_link}}
{{/if}}""",
]

_NOTIFICATION = [
    """Olá{{#if first_name}}, {{first_name}}{{/if}}!

{{message}}
{{#if company_name}}

_{{company_name}}_
{{/if}}""",
    """{{#if first_name}}Oi, {{first_name}}. {{/if}}{{#if company_name}}*{{company_name}}* informa:{{else}}*Aviso:*{{/if}}

{{message}}""",
]

# Printed on every path of a collection message: who is collecting (CDC art. 42-A).
_CREDITOR_LINE = "\n\nCredor: {{creditor_name}}, CPF/CNPJ {{creditor_document}}."

DEFAULT_TEMPLATES: dict[str, list[str]] = {
    "overdue": [text + _CREDITOR_LINE for text in _OVERDUE],
    "upcoming": [text + _CREDITOR_LINE for text in _UPCOMING],
    "notification": _NOTIFICATION,
}


def sample_variables(template_type: str, *, today: date | None = None) -> dict[str, Any]:
    """Portuguese sample data for previewing a template of `template_type`.

    `today` defaults to the server's date; pass the tenant's (`today_in(tz)`) for an exact
    preview, or a fixed date in tests.
    """
    if template_type not in TEMPLATE_TYPES:
        raise ValueError(f"unknown template type {template_type!r}; expected one of {', '.join(TEMPLATE_TYPES)}")
    today = today or date.today()
    calculator = BillingDateCalculator(today)
    base: dict[str, Any] = {
        "company_name": "Clínica Exemplo",
        "creditor_name": "Clínica Exemplo Ltda.",
        "creditor_document": "11.222.333/0001-81",
        "payment_link": "https://pagamento.exemplo.com.br/fatura/12345",
    }
    if template_type == "notification":
        base["message"] = "Sua consulta está confirmada para amanhã às 14h. Chegue com 15 minutos de antecedência."
        return calculator.enrich(base, name="Maria Silva")
    due = today - timedelta(days=5) if template_type == "overdue" else today + timedelta(days=3)
    return calculator.enrich(base, name="Maria Silva", due_date=due, amount=Decimal("1234.56"))
