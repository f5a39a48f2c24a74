"""Variation rotation: distributions, exact round-robin under concurrency, usage counters — the
draws in memory (`draw_variations`), the round-robin slots and counters in the ingest statement."""

from __future__ import annotations

import random
import threading
from collections import Counter
from types import SimpleNamespace

import pytest
from django.db import connection

from apps.billing.constants import RotationStrategy, TemplateType
from apps.billing.models import BillingContact, BillingTemplate, BillingTemplateVariation
from apps.billing.services.billing_campaign_service import BillingCampaignService
from apps.billing.services.variation_rotation import NoActiveVariationError, draw_variations
from apps.billing.tests.support.api import make_tenant
from apps.billing.tests.support.builders import build_template
from apps.common.exceptions import ApplicationError

DRAWS = 10_000
TOLERANCE = 0.03  # ±3 percentage points


def _shares(chosen):
    counts = Counter(v.name for v in chosen)
    return {name: n / len(chosen) for name, n in counts.items()}


def _variations(**weights: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(name=name, weight=weight) for name, weight in weights.items()]


def test_weighted_rotation_follows_the_weights():
    chosen = draw_variations(
        _variations(V1=1, V2=3, V3=6), RotationStrategy.WEIGHTED, DRAWS, rng=random.Random(20240601)
    )
    shares = _shares(chosen)
    for name, expected in {"V1": 0.1, "V2": 0.3, "V3": 0.6}.items():
        assert abs(shares[name] - expected) <= TOLERANCE, (name, shares[name])


def test_random_rotation_is_uniform():
    chosen = draw_variations(_variations(V1=1, V2=1, V3=1, V4=1), RotationStrategy.RANDOM, DRAWS, rng=random.Random(7))
    shares = _shares(chosen)
    assert set(shares) == {"V1", "V2", "V3", "V4"}
    for share in shares.values():
        assert abs(share - 0.25) <= TOLERANCE


def test_sequential_slots_are_left_to_the_ingest_statement():
    assert draw_variations(_variations(V1=1), RotationStrategy.SEQUENTIAL, 5) is None


def test_nothing_to_draw_from_is_a_clear_error():
    with pytest.raises(NoActiveVariationError):
        draw_variations([], RotationStrategy.RANDOM, 3)


# ----------------------------------------------------------------------------- through ingest
def _ingest(tenant, template: BillingTemplate, count: int, ext: str, start: int = 0) -> list[str]:
    """Ingest `count` contacts with `template`; the names of the variations they got, in order."""
    data = {
        "external_id": ext,
        "template": template.name,
        "strict": False,
        "contacts": [
            {"phone": f"+55 11 9{70000000 + start + i:08d}", "name": f"C{i}", "variables": {"nome": "Ana"}}
            for i in range(count)
        ],
    }
    body = (
        BillingCampaignService(tenant=tenant, api_key=None)
        .ingest(template_type=template.template_type, data=data, raw_payload=data)
        .body
    )
    return list(
        BillingContact.objects.filter(queue_id=body["queue_id"])
        .order_by("id")
        .values_list("variation__name", flat=True)
    )


def _template(tenant, strategy: str, variations) -> BillingTemplate:
    return build_template(tenant, template_type=TemplateType.NOTIFICATION, strategy=strategy, variations=variations)


@pytest.mark.django_db
@pytest.mark.parametrize("strategy", RotationStrategy.values)
def test_inactive_variations_are_never_chosen(strategy):
    tenant = make_tenant("rot-inactive").tenant
    template = _template(tenant, strategy, [{"weight": 5}, {"is_active": False, "weight": 100}, {}])
    assert set(_ingest(tenant, template, 200, "r-1")) == {"V1", "V3"}


@pytest.mark.django_db
@pytest.mark.parametrize("strategy", RotationStrategy.values)
def test_no_active_variation_is_a_clear_refusal(strategy):
    tenant = make_tenant("rot-none").tenant
    template = _template(tenant, strategy, [{"is_active": False}])
    with pytest.raises(ApplicationError) as refusal:
        _ingest(tenant, template, 3, "r-2")
    assert refusal.value.code == "no_active_variation" and refusal.value.status_code == 422


@pytest.mark.django_db
def test_sequential_rotation_is_round_robin_across_requests_and_counts_uses():
    tenant = make_tenant("rot-seq").tenant
    template = _template(tenant, RotationStrategy.SEQUENTIAL, 3)
    first, second = _ingest(tenant, template, 4, "s-1"), _ingest(tenant, template, 5, "s-2", start=10)
    assert first + second == ["V1", "V2", "V3", "V1", "V2", "V3", "V1", "V2", "V3"]
    assert BillingTemplate.objects.get(pk=template.pk).rotation_cursor == 9
    used = dict(BillingTemplateVariation.objects.filter(template=template).values_list("name", "used_count"))
    assert used == {"V1": 3, "V2": 3, "V3": 3}


@pytest.mark.django_db(transaction=True)
def test_concurrent_sequential_requests_never_share_slots():
    """Eight threads (eight connections) each ingest 25 contacts at once; the union is exactly
    200 consecutive slots, and each request got a consecutive block of the cycle."""
    tenant = make_tenant("rot-race").tenant
    template = _template(tenant, RotationStrategy.SEQUENTIAL, 4)
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def ingest(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(_ingest(tenant, template, 25, f"race-{n}", start=100 * n))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ingest, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert BillingTemplate.objects.get(pk=template.pk).rotation_cursor == 200
    combined = Counter(name for names in results for name in names)
    assert combined == {"V1": 50, "V2": 50, "V3": 50, "V4": 50}
    for names in results:
        start = ["V1", "V2", "V3", "V4"].index(names[0])
        assert names == [f"V{(start + i) % 4 + 1}" for i in range(25)]
    used = dict(BillingTemplateVariation.objects.filter(template=template).values_list("name", "used_count"))
    assert used == {"V1": 50, "V2": 50, "V3": 50, "V4": 50}
