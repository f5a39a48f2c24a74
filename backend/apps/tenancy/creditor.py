"""Who is collecting: the creditor's legal name and CPF/CNPJ, which every collection message
must print (Código de Defesa do Consumidor, art. 42-A).

They live on the tenant (one fact, one place) and reach a message as two template variables
the send worker adds to every render, like the dates it computes: templates print
`{{creditor_name}}` and `{{creditor_document}}` (formatted `000.000.000-00` or
`00.000.000/0000-00`). A collection template (overdue, upcoming) that does not print both on
every path is refused when saved (`missing_creditor_variables`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from stdnum.br import cnpj, cpf

if TYPE_CHECKING:
    from .models import Tenant

CREDITOR_VARIABLES = ("creditor_name", "creditor_document")
COLLECTION_TYPES = frozenset({"overdue", "upcoming"})
MISSING_CREDITOR_MESSAGE = (
    "Uma mensagem de cobrança precisa identificar o credor: inclua {{creditor_name}} e "
    "{{creditor_document}} fora de blocos condicionais (razão social e CPF/CNPJ do credor, do cadastro do cliente)."
)


def clean_document(value: str) -> str:
    """Digits of a valid CPF (11) or CNPJ (14); any punctuation accepted. Raises ValidationError."""
    digits = "".join(ch for ch in str(value or "") if ch.isdigit())
    if (len(digits) == 11 and cpf.is_valid(digits)) or (len(digits) == 14 and cnpj.is_valid(digits)):
        return digits
    raise ValidationError("Informe um CPF ou CNPJ válido (dígitos verificadores conferidos).", code="invalid_document")


def format_document(digits: str) -> str:
    if len(digits) == 11:
        return cpf.format(digits)
    if len(digits) == 14:
        return cnpj.format(digits)
    return digits


def creditor_variables(tenant: Tenant) -> dict[str, str]:
    """What the send worker adds to each render, replacing anything a request sent under these
    names (only the tenant says who collects). Blank until the tenant records them: a blank
    value is a missing variable to the engine, so a collection message then fails to render
    rather than go out without the creditor."""
    return {
        "creditor_name": tenant.creditor_legal_name.strip(),
        "creditor_document": format_document(tenant.creditor_document) if tenant.creditor_document else "",
    }


def missing_creditor_variables(template_type: str, printed: Iterable[str]) -> list[str]:
    """The creditor variables a template of this type must print but does not (on every path)."""
    if template_type not in COLLECTION_TYPES:
        return []
    printed = set(printed)
    return [name for name in CREDITOR_VARIABLES if name not in printed]
