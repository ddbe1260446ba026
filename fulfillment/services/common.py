"""Pieces every delivery service shares: errors, references, backoff, the unit report, and
the check that completes an order once every unit is delivered (or, once nothing is in
progress, hands the undelivered ones to refunds)."""

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.selectors import order_unit_counts
from fulfillment.signals import units_settled
from orders.models import Order
from orders.state import OrderStatus

logger = logging.getLogger(__name__)


class OrderNotFound(Exception):
    def __init__(self, order_id: int) -> None:
        self.order_id = order_id
        super().__init__(f"Order {order_id} does not exist. Check the id in the admin (Orders).")


class OrderNotFulfillable(Exception):
    """The order is not PAID, so nothing may be delivered."""

    def __init__(self, order_id: int, status: str, *, public_id: str | None = None) -> None:
        self.order_id = order_id
        self.status = status
        self.public_id = public_id
        super().__init__(
            f"Order {order_id} is {status}, not paid: only paid orders are delivered."
            + (" It is already fulfilled." if status == OrderStatus.FULFILLED else "")
        )


def new_reference() -> str:
    # Random rather than derived from ids: two environments sharing a provider account (or a
    # database restored from backup) must never collide on a reference.
    return uuid.uuid4().hex[:24]


def _backoff(attempt: int, *, base: float | None = None, cap: float | None = None) -> timedelta:
    """Exponential backoff with full jitter: attempt 1 waits up to base, then 2x, 4x... up to cap."""
    base = settings.FULFILLMENT_RETRY_BASE_SECONDS if base is None else base
    cap = settings.FULFILLMENT_RETRY_MAX_SECONDS if cap is None else cap
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


# Pending purchases are re-checked sooner than failed ones are re-bought.
_PENDING_BACKOFF_BASE = 15.0


def _max_attempts() -> int:
    return settings.FULFILLMENT_MAX_PURCHASE_ATTEMPTS


@dataclass(frozen=True)
class UnitReport:
    delivery_id: int
    unit_key: str
    reference: str
    kind: str
    outcome: str
    code: str = ""
    message: str = ""
    serial: str = ""
    failure_scope: str = ""
    balance: int | None = None  # the deposit the provider's answer reported, if any


_WORKABLE = Q(order__status=OrderStatus.PAID) | Q(
    order__status=OrderStatus.REFUNDED, status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING)
)


def _complete_if_delivered(order_id: int, *, counts: dict[str, int] | None = None) -> str:
    """Tell the money side when an order's units are settled; returns the order's status.

    Every unit delivered, or nothing in progress any more with some units undelivered: the
    `units_settled` receiver (the orders app) makes the order FULFILLED, or decides what the
    undelivered units become (refunded under REFUND_POLICY=auto, or left to staff) and closes the
    order once every unit is delivered or refunded.
    """
    counts = counts or order_unit_counts(order_id=order_id)
    if counts["total"]:
        all_delivered = counts["total"] == counts["delivered"]
        if all_delivered or not counts.get("open", 1):
            answers = units_settled.send(sender=Delivery, order_id=order_id, all_delivered=all_delivered)
            for _receiver, status in answers:
                if status:
                    return status
    return Order.objects.filter(pk=order_id).values_list("status", flat=True).get()
