"""Staff corrections of what an order buys: the recipient of an item whose units failed.

The unit is then bought again under a new reference (the staff retry): nothing was bought under
the old one, which got a final failure answer. The previous recipient is kept in the order's
admin history by the caller (who changed it, from what, to what).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from fulfillment.models import Delivery, DeliveryStatus
from orders.models import Order, OrderItem
from orders.state import OrderStatus


class RecipientNotCorrectable(Exception):
    """The recipient cannot be corrected; the message says why and what to do instead."""


@dataclass(frozen=True)
class RecipientCorrection:
    order_id: int
    item_id: int
    old: str
    new: str


def order_item_recipient_correct(*, item_id: int, recipient: str) -> RecipientCorrection:
    """Set the recipient of a PAID order's item whose units failed and none was delivered.

    Refused (RecipientNotCorrectable, nothing changed) for an unknown item, an order that is not
    PAID, an item with a unit delivered, in progress or being refunded (the change would rewrite
    what was already sent), an item with no failed unit (nothing to correct), and a recipient the
    product does not accept (its label and pattern are named).
    """
    recipient = (recipient or "").strip()
    with transaction.atomic():
        item = OrderItem.objects.select_related("product").filter(pk=item_id).first()
        if item is None:
            raise RecipientNotCorrectable(f"Order item {item_id} does not exist.")
        order = Order.objects.select_for_update(no_key=True).get(pk=item.order_id)
        if order.status != OrderStatus.PAID:
            raise RecipientNotCorrectable(
                f"Order {order.public_id} is {order.status}: only a paid order's recipient can be corrected."
            )
        statuses = set(Delivery.objects.filter(item_id=item.pk).values_list("status", flat=True))
        if DeliveryStatus.FAILED not in statuses:
            raise RecipientNotCorrectable(
                f"No unit of {item.product.name} for {item.recipient} has failed: there is nothing to correct."
            )
        busy = statuses - {DeliveryStatus.FAILED, DeliveryStatus.WAITING}
        if busy:
            raise RecipientNotCorrectable(
                f"A unit of {item.product.name} for {item.recipient} is {', '.join(sorted(busy))}: the recipient "
                "of units already sent cannot change. Refund the failed unit instead."
            )
        if not item.product.recipient_is_valid(recipient):
            label = item.product.recipient_label or "recipient"
            pattern = f" (format: {item.product.recipient_pattern})" if item.product.recipient_pattern else ""
            raise RecipientNotCorrectable(f"{recipient!r} is not a valid {label}{pattern}.")
        if recipient == item.recipient:
            raise RecipientNotCorrectable(f"The recipient is already {recipient}.")
        old = item.recipient
        OrderItem.objects.filter(pk=item.pk).update(recipient=recipient)
    return RecipientCorrection(order_id=order.pk, item_id=item.pk, old=old, new=recipient)
