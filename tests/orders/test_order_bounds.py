"""Quantities are bounded (ORDER_MAX_UNITS units per order: units are created inside the bank's
10 s answer window), and a paid order with nothing to deliver is flagged for staff once instead
of being queued again at every reconciliation sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment.models import FlagKind, OrderFlag
from fulfillment.services import order_fulfillment_reset_for_retry, paid_orders_reconcile
from orders.models import Order, OrderItem
from orders.services import ItemSpec, order_create, order_mark_paid

pytestmark = pytest.mark.django_db


def test_an_order_may_hold_twenty_units_by_default(product_factory, settings):
    assert settings.ORDER_MAX_UNITS == 20
    product, other = product_factory(), product_factory()
    order = order_create(
        items=[
            ItemSpec(product=product, recipient="0811", quantity=15),
            ItemSpec(product=other, recipient="0812", quantity=5),
        ]
    )
    assert sum(order.items.values_list("quantity", flat=True)) == 20


def test_more_units_than_the_bound_are_refused_and_nothing_is_created(product_factory):
    product, other = product_factory(), product_factory()
    with pytest.raises(ValueError, match=r"21 units; one order may hold at most 20 \(ORDER_MAX_UNITS\)"):
        order_create(
            items=[
                ItemSpec(product=product, recipient="0811", quantity=20),
                ItemSpec(product=other, recipient="0812", quantity=1),
            ]
        )
    with pytest.raises(ValueError, match="100000 units"):
        order_create(items=[ItemSpec(product=product, recipient="0811", quantity=100_000)])
    assert not Order.objects.exists() and not OrderItem.objects.exists()


def test_the_bound_is_a_setting(product_factory, settings):
    settings.ORDER_MAX_UNITS = 3
    with pytest.raises(ValueError, match="at most 3"):
        order_create(items=[ItemSpec(product=product_factory(), recipient="0811", quantity=4)])


@pytest.mark.parametrize("quantity", [2.5, "3", True, None])
def test_a_quantity_that_is_not_a_whole_number_is_refused(product_factory, quantity):
    with pytest.raises(ValueError, match="whole number"):
        order_create(items=[ItemSpec(product=product_factory(), recipient="0811", quantity=quantity)])
    assert not Order.objects.exists()


@pytest.fixture
def paid_with_nothing_to_deliver(order_factory):
    order = order_factory()
    OrderItem.objects.filter(order=order).update(quantity=0)  # written around order_create
    order_mark_paid(order_id=order.pk, payment_id="1")
    Order.objects.filter(pk=order.pk).update(paid_at=timezone.now() - timedelta(hours=1))
    return order


def test_a_paid_order_with_no_unit_is_flagged_once_and_not_queued_again(
    paid_with_nothing_to_deliver, queued_deliveries
):
    order = paid_with_nothing_to_deliver
    for _ in range(3):
        assert paid_orders_reconcile() == []
    assert queued_deliveries == []
    flag = OrderFlag.objects.get()
    assert (flag.order_id, flag.kind) == (order.pk, FlagKind.NOTHING_TO_DELIVER)
    assert "refund" in flag.reason
    assert Order.objects.get(pk=order.pk).status == "paid"  # money was taken: staff decide


def test_a_staff_retry_of_such_an_order_says_why_nothing_happens(paid_with_nothing_to_deliver, queued_deliveries):
    decision = order_fulfillment_reset_for_retry(order_id=paid_with_nothing_to_deliver.pk)
    assert not decision.queued
    assert "nothing to deliver" in decision.reason
