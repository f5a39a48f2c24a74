"""The default Portuguese templates a new tenant starts with, and the preview sample data."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from apps.billing.templating.date_calculator import BillingDateCalculator
from apps.billing.templating.default_templates import DEFAULT_TEMPLATES, TEMPLATE_TYPES, sample_variables
from apps.billing.templating.engine import BillingTemplateEngine
from apps.billing.templating.sanitizer import TemplateSanitizer

TODAY = date(2025, 3, 10)
ALL_DEFAULTS = [(kind, index, text) for kind, texts in DEFAULT_TEMPLATES.items() for index, text in enumerate(texts)]

# What the send worker always has for each type: the per-type required fields, enriched, and
# for collection messages the tenant's creditor identification (apps/tenancy/creditor.py).
CREDITOR = {"creditor_name": "Clínica Exemplo Ltda.", "creditor_document": "11.222.333/0001-81"}
MINIMAL = {
    "overdue": BillingDateCalculator(TODAY).enrich(CREDITOR, due_date=date(2025, 3, 1), amount=Decimal("10")),
    "upcoming": BillingDateCalculator(TODAY).enrich(CREDITOR, due_date=date(2025, 3, 15), amount=Decimal("10")),
    "notification": {"message": "Seu horário foi remarcado."},
}


def test_every_type_has_two_or_three_variations():
    assert set(DEFAULT_TEMPLATES) == set(TEMPLATE_TYPES) == {"overdue", "upcoming", "notification"}
    for texts in DEFAULT_TEMPLATES.values():
        assert 2 <= len(texts) <= 3
        assert len(set(texts)) == len(texts)


@pytest.mark.parametrize(("kind", "index", "text"), ALL_DEFAULTS)
def test_defaults_validate_and_survive_the_sanitizer_unchanged(kind, index, text):
    BillingTemplateEngine.validate(text)
    assert TemplateSanitizer.clean_template(text) == text


@pytest.mark.parametrize(("kind", "index", "text"), ALL_DEFAULTS)
def test_defaults_render_with_the_sample_variables(kind, index, text):
    output = BillingTemplateEngine.render(text, sample_variables(kind, today=TODAY))
    assert "{{" not in output and "}}" not in output
    assert "\n\n\n" not in output
    assert "Maria" in output
    if kind != "notification":
        assert "R$ 1.234,56" in output
        assert "Credor: Clínica Exemplo Ltda., CPF/CNPJ 11.222.333/0001-81." in output  # CDC art. 42-A


@pytest.mark.parametrize(("kind", "index", "text"), ALL_DEFAULTS)
def test_defaults_render_with_only_what_the_worker_always_has(kind, index, text):
    output = BillingTemplateEngine.render(text, MINIMAL[kind])
    assert "{{" not in output
    assert BillingTemplateEngine.variables_used(text) <= set(MINIMAL[kind])


def test_sample_variables_look_like_what_the_worker_renders():
    overdue = sample_variables("overdue", today=TODAY)
    assert overdue["name"] == "Maria Silva"
    assert overdue["first_name"] == "Maria"
    assert overdue["amount"] == "R$ 1.234,56"
    assert overdue["due_date"] == "05/03/2025"
    assert overdue["days_overdue"] == 5
    assert overdue["days_until_due"] == 0
    assert overdue["payment_link"].startswith("https://")
    assert overdue["company_name"]

    upcoming = sample_variables("upcoming", today=TODAY)
    assert (upcoming["days_until_due"], upcoming["days_overdue"], upcoming["due_date"]) == (3, 0, "13/03/2025")

    notification = sample_variables("notification", today=TODAY)
    assert notification["message"]
    assert "amount" not in notification


def test_sample_variables_default_to_today():
    assert sample_variables("upcoming")["days_until_due"] == 3


def test_sample_variables_refuse_unknown_types():
    with pytest.raises(ValueError):
        sample_variables("marketing")
