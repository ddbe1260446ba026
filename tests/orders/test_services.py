"""Order write services (orders.services): creation and the status changes with their signals."""

from __future__ import annotations

import pytest

from fulfillment.models import Delivery, DeliveryStatus
from orders import signals
from orders.models import Order, OrderItem
from orders.services import (
    ItemSpec,
    order_cancel,
    order_create,
    order_mark_fulfilled,
    order_mark_paid,
    order_refund,
)
from orders.state import IllegalTransition, OrderStatus


@pytest.fixture
def signal_log():
    log = []

    def on_paid(sender, order_id, **kwargs):
        log.append(("paid", order_id))

    def on_refunded(sender, order_id, **kwargs):
        log.append(("refunded", order_id))

    signals.order_paid.connect(on_paid)
    signals.order_refunded.connect(on_refunded)
    yield log
    signals.order_paid.disconnect(on_paid)
    signals.order_refunded.disconnect(on_refunded)


def test_order_create_sums_items_at_current_prices(product_factory):
    cheap, dear = product_factory(price_kopecks=1500), product_factory(price_kopecks=30000)

    order = order_create(
        items=[ItemSpec(product=cheap, recipient=" 0878 ", quantity=3), ItemSpec(product=dear, recipient="player-1")],
        customer_email="c@example.com",
    )

    assert (order.status, order.amount_kopecks, order.customer_email) == (OrderStatus.NEW, 34500, "c@example.com")
    items = list(OrderItem.objects.filter(order=order).values_list("product_id", "quantity", "unit_price_kopecks"))
    assert items == [(cheap.pk, 3, 1500), (dear.pk, 1, 30000)]
    assert OrderItem.objects.filter(order=order).first().recipient == "0878"
    assert not Delivery.objects.exists()  # units come with payment


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"quantity": 0}, "must be at least 1, not 0"),
        ({"recipient": "   "}, "needs a recipient"),
        ({"inactive": True}, "is not active and cannot be ordered"),
    ],
)
def test_order_create_refuses_bad_items_and_creates_nothing(product_factory, spec, message):
    product = product_factory(is_active=not spec.get("inactive", False))
    item = ItemSpec(product=product, recipient=spec.get("recipient", "0878"), quantity=spec.get("quantity", 1))
    with pytest.raises(ValueError, match=message):
        order_create(items=[item])
    assert not Order.objects.exists()


def test_order_create_needs_items(db):
    with pytest.raises(ValueError, match="at least one item"):
        order_create(items=[])


def test_mark_paid_creates_units_and_signals_once(order_factory, signal_log):
    order = order_factory(quantities=(2, 1))

    first = order_mark_paid(order_id=order.pk, payment_id="77")
    second = order_mark_paid(order_id=order.pk, payment_id="78")

    assert (first.changed, second.changed) == (True, False)
    order.refresh_from_db()
    assert (order.status, order.payment_id) == (OrderStatus.PAID, "77")
    assert signal_log == [("paid", order.pk)]
    units = list(Delivery.objects.filter(order=order).values_list("unit_key", "status"))
    items = list(order.items.values_list("pk", flat=True))
    assert units == [
        (f"{order.pk}-{items[0]}-0", DeliveryStatus.WAITING),
        (f"{order.pk}-{items[0]}-1", DeliveryStatus.WAITING),
        (f"{order.pk}-{items[1]}-0", DeliveryStatus.WAITING),
    ]
    assert len(set(Delivery.objects.values_list("reference", flat=True))) == 3


def test_mark_paid_without_payment_id_keeps_the_stored_one(order_factory):
    order = order_factory()
    order_mark_paid(order_id=order.pk)
    assert Order.objects.get(pk=order.pk).payment_id == ""


def test_cancel_then_refund_rules(order_factory, signal_log):
    order = order_factory()
    assert order_cancel(order_id=order.pk).changed
    assert not order_cancel(order_id=order.pk).changed
    with pytest.raises(IllegalTransition):
        order_refund(order_id=order.pk)
    assert signal_log == []


def test_refund_signals_once_and_cancels_waiting_units(paid_order_factory, signal_log):
    order = paid_order_factory(quantities=(2,))
    signal_log.clear()

    assert order_refund(order_id=order.pk).changed
    assert not order_refund(order_id=order.pk).changed

    assert signal_log == [("refunded", order.pk)]
    assert set(Delivery.objects.filter(order=order).values_list("status", flat=True)) == {DeliveryStatus.CANCELLED}


def test_refund_that_fails_rolls_back_the_unit_cancellation(paid_order_factory):
    # The transition and its side effects share a transaction.
    order = paid_order_factory()

    def explode(sender, order_id, **kwargs):
        raise RuntimeError("listener failed")

    signals.order_refunded.connect(explode)
    try:
        with pytest.raises(RuntimeError):
            order_refund(order_id=order.pk)
    finally:
        signals.order_refunded.disconnect(explode)

    assert Order.objects.get(pk=order.pk).status == OrderStatus.PAID
    assert Delivery.objects.get(order=order).status == DeliveryStatus.WAITING


def test_mark_fulfilled_only_from_paid(order_factory, paid_order_factory):
    with pytest.raises(IllegalTransition):
        order_mark_fulfilled(order_id=order_factory().pk)
    paid = paid_order_factory()
    assert order_mark_fulfilled(order_id=paid.pk).current == OrderStatus.FULFILLED
