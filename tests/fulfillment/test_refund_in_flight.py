"""A refund stops what was not sent; what was already sent is still checked until its outcome is known."""

from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.providers.base import FulfillmentResult
from fulfillment.services import fulfill_order, paid_orders_reconcile
from orders.services import order_refund
from orders.state import OrderStatus


def test_pending_unit_of_a_refunded_order_is_checked_with_its_reference(
    scripted_provider, paid_order_factory, queued_deliveries, django_capture_on_commit_callbacks
):
    order = paid_order_factory(quantities=(1, 1))
    first_sku, second_sku = [item.product.sku for item in order.items.order_by("id")]
    scripted_provider.script(first_sku, FulfillmentResult.pending(code="03"))
    fulfill_order(order.pk, items=[order.items.order_by("id").first().pk])
    sent = Delivery.objects.get(order=order, item__product__sku=first_sku)
    assert sent.status == DeliveryStatus.PENDING

    order_refund(order_id=order.pk)
    assert Delivery.objects.get(order=order, item__product__sku=second_sku).status == DeliveryStatus.CANCELLED

    Delivery.objects.filter(pk=sent.pk).update(next_attempt_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert paid_orders_reconcile() == [order.pk]
    assert queued_deliveries == [order.pk]

    report = fulfill_order(order.pk)
    sent.refresh_from_db()
    assert sent.status == DeliveryStatus.DELIVERED
    assert report.order_status == OrderStatus.REFUNDED
    # Only the unit already sent was ever asked about, always under its one reference.
    assert scripted_provider.calls_for(first_sku) == [("fulfill", sent.reference), ("check", sent.reference)]
    assert scripted_provider.calls_for(second_sku) == []


def test_reconciliation_cancels_a_waiting_unit_left_on_a_refunded_order(paid_order_factory):
    # The refund and a failed purchase going back to WAITING can cross; the sweep tidies up.
    order = paid_order_factory(quantities=(1,))
    order_refund(order_id=order.pk)
    Delivery.objects.filter(order=order).update(status=DeliveryStatus.WAITING)
    paid_orders_reconcile()
    assert Delivery.objects.get(order=order).status == DeliveryStatus.CANCELLED
