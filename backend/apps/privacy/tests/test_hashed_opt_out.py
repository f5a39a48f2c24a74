"""An erased phone's opt-out, kept only as a keyed hash, is seen by every suppression check
the phone goes through: the worker's and replies' `is_suppressed`, the charges' `suppressed_phones`,
and a later reply asking to stop (no second row)."""

from __future__ import annotations

import pytest

from apps.billing.models import SuppressedPhone
from apps.billing.services.opt_out import is_suppressed, suppress, suppressed_phones
from apps.billing.tests.support.builders import build_tenant
from apps.common.keyed_hash import phone_hash

pytestmark = pytest.mark.django_db
ERASED, OTHER, PLAIN = "+5511987654321", "+5511912345678", "+5521988887777"


def test_every_check_matches_the_hash_and_only_in_its_tenant(django_assert_num_queries):
    tenant, elsewhere = build_tenant(), build_tenant()
    SuppressedPhone.objects.create(
        tenant=tenant, phone=None, phone_hash=phone_hash(ERASED), source=SuppressedPhone.Source.ERASURE
    )
    suppress(tenant=tenant, phone=PLAIN)
    assert is_suppressed(tenant=tenant, phone=ERASED) and not is_suppressed(tenant=tenant, phone=OTHER)
    assert not is_suppressed(tenant=elsewhere, phone=ERASED)
    with django_assert_num_queries(1):
        assert suppressed_phones(tenant=tenant, phones=[ERASED, OTHER, PLAIN] * 100) == {ERASED, PLAIN}
    row, created = suppress(tenant=tenant, phone=ERASED)
    assert not created and row.phone is None
    assert SuppressedPhone.objects.filter(tenant=tenant).count() == 2


def test_the_hash_is_keyed(settings):
    before = phone_hash(ERASED)
    settings.PERSONAL_DATA_HASH_KEY = "another-key"
    assert phone_hash(ERASED) != before and len(before) == 64
