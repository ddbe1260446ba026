"""Where the order ends: FULFILLED, PARTIALLY_REFUNDED or REFUNDED once every unit is delivered
or refunded."""

from __future__ import annotations

import logging

from django.db.models import Count, Q

from fulfillment.models import OPEN_STATUSES, Delivery, DeliveryStatus
from orders.models import Order
from orders.services.lifecycle import order_mark_fulfilled, order_mark_partially_refunded, order_refund
from orders.state import IllegalTransition, OrderStatus

logger = logging.getLogger(__name__)


def _order_unit_counts(order_id: int) -> dict[str, int]:
    return Delivery.objects.filter(order_id=order_id).aggregate(
        total=Count("id"),
        delivered=Count("id", filter=Q(status=DeliveryStatus.DELIVERED, refund__isnull=True)),
        refunded=Count("id", filter=Q(status=DeliveryStatus.REFUNDED)),
        unsettled=Count("id", filter=Q(status__in=(*OPEN_STATUSES, DeliveryStatus.FAILED, DeliveryStatus.REFUNDING))),
    )


def order_settle(*, order_id: int) -> str:
    """Move a PAID order to its final status once every unit is delivered or refunded (and the
    refund succeeded): FULFILLED, PARTIALLY_REFUNDED or REFUNDED. Returns the order's status."""
    counts = _order_unit_counts(order_id)
    status = Order.objects.filter(pk=order_id).values_list("status", flat=True).get()
    if status != OrderStatus.PAID or not counts["total"] or counts["unsettled"]:
        return status
    if counts["delivered"] + counts["refunded"] != counts["total"]:
        return status
    try:
        if counts["delivered"] == counts["total"]:
            return order_mark_fulfilled(order_id=order_id).current
        if counts["delivered"]:
            return order_mark_partially_refunded(order_id=order_id).current
        return order_refund(order_id=order_id, current=status).current
    except IllegalTransition as exc:
        return exc.current
