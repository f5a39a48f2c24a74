"""The two notification templates replies are sent with, created for a tenant the first time.

* payment info — the automatic answer to "me manda o pix": three variations (rotated like any
  template's) that print only the payment data the debt has (`{{#if pix_code}}`...).
* staff reply — a person's words, as typed: `{{message}}`.

Both are ordinary templates: the tenant's admin can edit the texts, add variations, or point
`ReplySettings` at other templates.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from apps.billing.constants import RotationStrategy, TemplateType
from apps.billing.models import BillingTemplate, BillingTemplateVariation, ReplySettings
from apps.common.config_version import bump_config_version
from apps.tenancy.models import Tenant

PAYMENT_INFO_NAME = "Resposta automática: dados de pagamento"
STAFF_REPLY_NAME = "Resposta da equipe"
STAFF_REPLY_VARIABLE = "message"

_PAYMENT_DATA = """{{#if pix_code}}

*PIX copia e cola:*
{{pix_code}}
{{/if}}
{{#if boleto_line}}

*Linha digitável do boleto:*
{{boleto_line}}
{{/if}}
{{#if payment_link}}

*Link para pagamento:* {{payment_link}}
{{/if}}"""

PAYMENT_INFO_VARIATIONS = [
    "Claro{{#if first_name}}, {{first_name}}{{/if}}! Seguem os dados para pagamento{{#if amount}} de "
    "*{{amount|money}}*{{/if}}{{#if due_date}} (vencimento {{due_date|date}}){{/if}}:"
    + _PAYMENT_DATA
    + "\n\nSe o pagamento já foi feito, é só desconsiderar.",
    "Aqui estão os dados para você pagar{{#if amount}} *{{amount|money}}*{{/if}}:"
    + _PAYMENT_DATA
    + "\n\nQualquer dúvida, responda por aqui.",
    "Segue{{#if first_name}}, {{first_name}},{{/if}} o que você precisa para o pagamento{{#if amount}} de "
    "*{{amount|money}}*{{/if}}:" + _PAYMENT_DATA + "\n\nObrigado!",
]


def payment_info_template(*, settings: ReplySettings) -> BillingTemplate:
    template = settings.payment_info_template  # no query while there is none
    if template is None:
        template = _ensure(settings.tenant, PAYMENT_INFO_NAME, PAYMENT_INFO_VARIATIONS)
        ReplySettings.objects.filter(pk=settings.pk, payment_info_template__isnull=True).update(
            payment_info_template=template
        )
        settings.payment_info_template = template
    return template


def staff_reply_template(*, settings: ReplySettings) -> BillingTemplate:
    template = settings.staff_reply_template  # no query while there is none
    if template is None:
        template = _ensure(settings.tenant, STAFF_REPLY_NAME, ["{{" + STAFF_REPLY_VARIABLE + "}}"])
        ReplySettings.objects.filter(pk=settings.pk, staff_reply_template__isnull=True).update(
            staff_reply_template=template
        )
        settings.staff_reply_template = template
    return template


def _ensure(tenant: Tenant, name: str, texts: list[str]) -> BillingTemplate:
    """The tenant's template of this name, created with `texts` as its variations (race-safe:
    a concurrent first reply creating it makes this one read it)."""
    template = BillingTemplate.objects.filter(tenant=tenant, name=name).first()
    if template is not None:
        return template
    try:
        with transaction.atomic():
            template = BillingTemplate.objects.create(
                tenant=tenant,
                name=name,
                template_type=TemplateType.NOTIFICATION,
                rotation_strategy=RotationStrategy.SEQUENTIAL,
                is_default=False,
                description="Created for conversation replies (ReplySettings).",
            )
            BillingTemplateVariation.objects.bulk_create(
                [
                    BillingTemplateVariation(template=template, name=chr(ord("A") + i), content=text)
                    for i, text in enumerate(texts)
                ]
            )
            bump_config_version(tenant.pk)  # the ingest's cached tenant context must see it
    except IntegrityError:
        template = BillingTemplate.objects.get(tenant=tenant, name=name)
    return template
