"""Variation rotation: distributions, exact round-robin under concurrency, O(1) queries."""
from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from django.db import connection, transaction

from apps.billing.constants import RotationStrategy
from apps.billing.models import BillingTemplate, BillingTemplateVariation
from apps.billing.services.variation_rotation import (
    NoActiveVariationError,
    choose_variations,
    record_variation_usage,
)

from .conftest import build_template

DRAWS = 10_000
TOLERANCE = 0.03  # ±3 percentage points


def _shares(chosen):
    counts = Counter(v.name for v in chosen)
    return {name: n / len(chosen) for name, n in counts.items()}


@pytest.mark.django_db
def test_weighted_rotation_follows_the_weights(tenant):
    template = build_template(tenant, strategy=RotationStrategy.WEIGHTED,
                              variations=[{"weight": 1}, {"weight": 3}, {"weight": 6}])
    shares = _shares(choose_variations(template, DRAWS, rng=random.Random(20240601)))
    for name, expected in {"V1": 0.1, "V2": 0.3, "V3": 0.6}.items():
        assert abs(shares[name] - expected) <= TOLERANCE, (name, shares[name])


@pytest.mark.django_db
def test_random_rotation_is_uniform(tenant):
    template = build_template(tenant, strategy=RotationStrategy.RANDOM, variations=4)
    shares = _shares(choose_variations(template, DRAWS, rng=random.Random(7)))
    assert set(shares) == {"V1", "V2", "V3", "V4"}
    for share in shares.values():
        assert abs(share - 0.25) <= TOLERANCE


@pytest.mark.django_db
@pytest.mark.parametrize("strategy", RotationStrategy.values)
def test_inactive_variations_are_never_chosen(tenant, strategy):
    template = build_template(tenant, strategy=strategy,
                              variations=[{"weight": 5}, {"is_active": False, "weight": 100}, {}])
    chosen = choose_variations(template, 2000, rng=random.Random(1))
    assert "V2" not in {v.name for v in chosen}
    assert {v.name for v in chosen} == {"V1", "V3"}


@pytest.mark.django_db
@pytest.mark.parametrize("strategy", RotationStrategy.values)
def test_no_active_variation_is_a_clear_error(tenant, strategy):
    template = build_template(tenant, strategy=strategy, variations=[{"is_active": False}])
    with pytest.raises(NoActiveVariationError, match="no active variation"):
        choose_variations(template, 3)
    assert choose_variations(template, 0) == []


@pytest.mark.django_db
def test_sequential_rotation_is_round_robin_across_calls(tenant):
    template = build_template(tenant, strategy=RotationStrategy.SEQUENTIAL, variations=3)
    first = [v.name for v in choose_variations(template, 4)]
    second = [v.name for v in choose_variations(template, 5)]
    assert first + second == ["V1", "V2", "V3", "V1", "V2", "V3", "V1", "V2", "V3"]
    assert BillingTemplate.objects.get(pk=template.pk).rotation_cursor == 9


@pytest.mark.django_db
@pytest.mark.parametrize("strategy", RotationStrategy.values)
def test_query_count_does_not_grow_with_the_number_of_contacts(tenant, strategy, django_assert_max_num_queries):
    template = build_template(tenant, strategy=strategy, variations=3)
    with django_assert_max_num_queries(2):
        assert len(choose_variations(template, 10)) == 10
    with django_assert_max_num_queries(2):
        assert len(choose_variations(template, 10_000)) == 10_000


@pytest.mark.django_db
def test_record_usage_adds_uses_in_one_update(tenant, django_assert_num_queries):
    template = build_template(tenant, strategy=RotationStrategy.SEQUENTIAL, variations=3)
    chosen = choose_variations(template, 7)
    with django_assert_num_queries(1):
        record_variation_usage(chosen)
    used = dict(BillingTemplateVariation.objects.filter(template=template).values_list("name", "used_count"))
    assert used == {"V1": 3, "V2": 2, "V3": 2}


@pytest.mark.django_db(transaction=True)
def test_concurrent_sequential_requests_never_share_slots(tenant):
    """Eight threads (eight connections) each reserve 25 slots in their own transaction; the
    union is exactly 200 consecutive slots, so the round-robin stays exact."""
    template = build_template(tenant, strategy=RotationStrategy.SEQUENTIAL, variations=4)
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def ingest() -> None:
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                local = BillingTemplate.objects.get(pk=template.pk)
                results.append([v.name for v in choose_variations(local, 25)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ingest) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert BillingTemplate.objects.get(pk=template.pk).rotation_cursor == 200
    combined = Counter(name for names in results for name in names)
    assert combined == {"V1": 50, "V2": 50, "V3": 50, "V4": 50}
    for names in results:  # each request got a consecutive block of the cycle
        start = ["V1", "V2", "V3", "V4"].index(names[0])
        assert names == [f"V{(start + i) % 4 + 1}" for i in range(25)]
