"""Reactions of the orders app to order status changes, run inside the changing transaction."""

from django.dispatch import receiver

from orders.services.emails import customer_email_enqueue
from orders.signals import order_fulfilled


@receiver(order_fulfilled)
def _email_the_codes(sender, *, order_id: int, **kwargs) -> None:
    # The outbox row commits with FULFILLED or not at all; the task is queued after commit.
    customer_email_enqueue(order_id=order_id, kind="codes")
