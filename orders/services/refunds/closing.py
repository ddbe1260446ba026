"""Where the order ends: FULFILLED, PARTIALLY_REFUNDED or REFUNDED once every unit is delivered
or refunded."""

from __future__ import annotations

import logging

from fulfillment.selectors import order_unit_counts
from orders.models import Order
from orders.services.lifecycle import order_mark_fulfilled, order_mark_partially_refunded, order_refund
from orders.state import IllegalTransition, OrderStatus

logger = logging.getLogger(__name__)


def order_settle(*, order_id: int) -> str:
    """Move a PAID order to its final status once every unit is delivered or refunded (and the
    refund succeeded): FULFILLED, PARTIALLY_REFUNDED or REFUNDED. Returns the order's status."""
    counts = order_unit_counts(order_id=order_id)
    status = Order.objects.filter(pk=order_id).values_list("status", flat=True).get()
    if status != OrderStatus.PAID or not counts["total"] or counts["unsettled"]:
        return status
    delivered = counts["delivered_kept"]
    if delivered + counts["refunded"] != counts["total"]:
        return status
    try:
        if delivered == counts["total"]:
            return order_mark_fulfilled(order_id=order_id).current
        if delivered:
            return order_mark_partially_refunded(order_id=order_id).current
        return order_refund(order_id=order_id, current=status).current
    except IllegalTransition as exc:
        return exc.current
