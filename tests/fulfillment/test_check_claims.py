"""A status check renews the unit's claim, so a slow run over an order with many pending units
never checks a reference that another run has just checked (providers forbid two checks of one
transaction within min_check_interval; Digiflazz: a minute)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.providers.base import FulfillmentResult
from fulfillment.services import fulfill_order

pytestmark = pytest.mark.django_db


def test_units_whose_claim_expired_during_a_slow_run_are_not_checked_twice(scripted_provider, paid_order_factory):
    order = paid_order_factory(quantities=(3,))
    sku = order.items.get().product.sku
    pending = FulfillmentResult.pending(code="03")

    def slow_check(params):
        # This check took longer than the claim: the claims of the units after it expired, and a
        # reconciliation-queued run took them over and checked them.
        later = Delivery.objects.filter(order=order).exclude(reference=params.reference)
        later.update(claim_expires_at=timezone.now() - timedelta(seconds=1))
        fulfill_order(order.pk)
        return pending

    scripted_provider.script(sku, pending, pending, pending, slow_check, pending, pending)
    fulfill_order(order.pk)  # three purchases, all pending
    Delivery.objects.filter(order=order).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    fulfill_order(order.pk)

    checks = Counter(reference for kind, reference in scripted_provider.calls_for(sku) if kind == "check")
    assert sorted(checks.values()) == [1, 1, 1], checks
    assert set(Delivery.objects.filter(order=order).values_list("status", flat=True)) == {DeliveryStatus.PENDING}
