"""Reactions of the orders app to order status changes, run inside the changing transaction."""

from django.dispatch import receiver

from fulfillment.signals import unit_delivered_after_refund
from orders.services.emails import customer_email_enqueue
from orders.signals import order_fulfilled


@receiver(order_fulfilled)
def _email_the_codes(sender, *, order_id: int, **kwargs) -> None:
    # The outbox row commits with FULFILLED or not at all; the task is queued after commit.
    customer_email_enqueue(order_id=order_id, kind="codes")


@receiver(unit_delivered_after_refund)
def _late_delivery(sender, *, delivery_id: int, attempt_id: int | None = None, serial: str = "", **kwargs) -> None:
    from orders.services.refunds import refund_unit_delivered_late

    refund_unit_delivered_late(delivery_id=delivery_id, attempt_id=attempt_id, serial=serial)
