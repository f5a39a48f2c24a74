"""The database keeps a template at five active variations whatever the callers do: two
transactions each adding a fifth at the same time (each alone within the limit, each seeing
only its own row) cannot both commit; a swap inside one transaction is judged on its result."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from apps.billing.models import BillingTemplateVariation
from apps.billing.tests.support.builders import build_template, build_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def add_variation(template_id, name: str, ready: threading.Barrier, results: dict) -> None:
    try:
        with transaction.atomic():
            BillingTemplateVariation.objects.create(template_id=template_id, name=name, content="Olá")
            ready.wait(timeout=10)  # both rows written, neither committed: now both commit at once
        results[name] = "committed"
    except IntegrityError as exc:
        results[name] = str(exc)
    finally:
        connection.close()


def test_two_concurrent_fifth_variations_cannot_both_commit():
    template = build_template(build_tenant(), variations=4)
    ready, results = threading.Barrier(2), {}
    threads = [threading.Thread(target=add_variation, args=(template.pk, name, ready, results)) for name in ("X", "Y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results.values()).count("committed") == 1, results
    assert any("at most 5 active variations" in outcome for outcome in results.values())
    assert template.variations.filter(is_active=True).count() == 5


def test_a_swap_in_one_transaction_is_judged_on_its_result():
    template = build_template(build_tenant(), variations=5)
    with transaction.atomic():
        BillingTemplateVariation.objects.create(template=template, name="new", content="Olá")  # six, for a moment
        template.variations.filter(name="V1").update(is_active=False)
    assert template.variations.filter(is_active=True).count() == 5
    with pytest.raises(IntegrityError, match="at most 5"), transaction.atomic():
        template.variations.filter(name="V1").update(is_active=True)
