"""Flags for staff: an order something is wrong with that no machine can settle (a provider
callback contradicting a delivered unit, a paid order with nothing to deliver).

Open flags are `OrderFlag.objects.filter(resolved_at__isnull=True)`; `orders_needing_review()`
gives their orders. A flag is raised once per order, unit and kind while it is open: a callback
sent again does not pile up flags (each one is still recorded as a DeliveryAttempt).
"""

from __future__ import annotations

import logging

from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from fulfillment.models import OrderFlag
from fulfillment_site.logs import order_log_extra
from orders.models import Order

logger = logging.getLogger(__name__)


def order_flag_raise(
    *, order_id: int, kind: str, reason: str, delivery_id: int | None = None, attempt_id: int | None = None
) -> OrderFlag:
    """Flag order `order_id` for staff; an open flag of the same kind for the same unit is returned as is."""
    existing = OrderFlag.objects.filter(
        order_id=order_id, delivery_id=delivery_id, kind=kind, resolved_at__isnull=True
    ).first()
    if existing is not None:
        return existing
    flag = OrderFlag.objects.create(
        order_id=order_id, delivery_id=delivery_id, attempt_id=attempt_id, kind=kind, reason=reason
    )
    logger.warning("Order %s flagged for staff (%s): %s", order_id, kind, reason, extra=order_log_extra(order_id))
    return flag


def order_flag_resolve(*, flag_id: int, resolved_by: str) -> bool:
    """Close a flag once someone has dealt with it. False when it was already closed."""
    return bool(
        OrderFlag.objects.filter(pk=flag_id, resolved_at__isnull=True).update(
            resolved_at=timezone.now(), resolved_by=resolved_by[:150]
        )
    )


def orders_needing_review() -> QuerySet[Order]:
    """Orders with at least one open flag."""
    return Order.objects.filter(Exists(OrderFlag.objects.filter(order=OuterRef("pk"), resolved_at__isnull=True)))
