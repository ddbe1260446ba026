"""Reactions to order status changes, run inside the transaction that made the change."""

from django.db import transaction
from django.dispatch import receiver

from fulfillment.services import deliveries_cancel_unsent, deliveries_create, order_fulfillment_publish
from orders.signals import order_paid, order_refunded


@receiver(order_paid)
def _queue_delivery(sender, *, order_id: int, **kwargs) -> None:
    # Units exist from the moment the order is paid, so a lost task message is found by
    # reconciliation like any other due unit.
    deliveries_create(order_id=order_id)
    transaction.on_commit(lambda: order_fulfillment_publish(order_id=order_id))


@receiver(order_refunded)
def _stop_delivery(sender, *, order_id: int, **kwargs) -> None:
    deliveries_cancel_unsent(order_id=order_id)
