"""Order lifecycle: creation, payment, cancellation, refund and fulfillment of an order.

Status changes go through orders.state; side effects of a change (queueing delivery,
stopping it on refund) are announced with the signals in orders.signals, inside the same
transaction, so a listener can act atomically with the change or defer to on_commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from orders import signals
from orders.models import Order, OrderItem, Product
from orders.state import (
    IllegalTransition,
    OrderStatus,
    TransitionResult,
    order_transition,
    order_transition_returning,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemSpec:
    product: Product
    recipient: str
    quantity: int = 1


def order_create(*, items: list[ItemSpec], customer_email: str = "") -> Order:
    """Create a NEW order whose amount is the sum of its items at current product prices.

    Raises ValueError, changing nothing, for an empty order, a quantity that is not a whole number
    of at least 1, more than settings.ORDER_MAX_UNITS units in all, an inactive product or a
    missing recipient.
    """
    if not items:
        raise ValueError("An order needs at least one item.")
    for spec in items:
        if not isinstance(spec.quantity, int) or isinstance(spec.quantity, bool):
            raise ValueError(f"Quantity of {spec.product} must be a whole number, not {spec.quantity!r}.")
        if spec.quantity < 1:
            raise ValueError(f"Quantity of {spec.product} must be at least 1, not {spec.quantity}.")
    units = sum(spec.quantity for spec in items)
    if units > settings.ORDER_MAX_UNITS:
        raise ValueError(
            f"The order has {units} units; one order may hold at most {settings.ORDER_MAX_UNITS} "
            "(ORDER_MAX_UNITS). Split it into several orders."
        )
    for spec in items:
        if not spec.product.is_active:
            raise ValueError(f"{spec.product} is not active and cannot be ordered.")
        if not spec.recipient.strip():
            raise ValueError(f"Item {spec.product} needs a recipient (phone number or account id).")
    amount = sum(spec.product.price_kopecks * spec.quantity for spec in items)
    with transaction.atomic():
        order = Order.objects.create(amount_kopecks=amount, customer_email=customer_email)
        OrderItem.objects.bulk_create(
            OrderItem(
                order=order,
                product=spec.product,
                quantity=spec.quantity,
                recipient=spec.recipient.strip(),
                **OrderItem.sold_as(spec.product),
            )
            for spec in items
        )
    return order


def order_mark_paid(*, order_id: int, payment_id: str = "", current: str | None = None) -> TransitionResult:
    """NEW/CANCELLED -> PAID; queues delivery once the transaction commits."""
    fields = {"payment_id": payment_id} if payment_id else {}
    # No savepoint: inside the webhook's transaction an error here rolls the whole notification
    # back anyway, and SAVEPOINT + RELEASE were two of the nine statements of every payment.
    with transaction.atomic(savepoint=False):
        result = order_transition(order_id=order_id, target=OrderStatus.PAID, current=current, **fields)
        if result.changed:
            signals.order_paid.send(sender=Order, order_id=order_id)
    return result


def order_mark_paid_if_new(*, public_id: str, amount_kopecks: int, payment_id: str = "") -> Order | None:
    """NEW -> PAID for the NEW order with this public id and amount, in one statement that locks,
    checks and updates it; queues delivery once the transaction commits, as order_mark_paid.

    Returns the paid order, or None, changing nothing, when there is no NEW order with this id
    and amount (unknown, already paid, cancelled, another amount): the caller then reads the
    order under its row lock and decides, as for any other notification.
    """
    fields = {"payment_id": payment_id} if payment_id else {}
    with transaction.atomic(savepoint=False):  # no savepoint, as in order_mark_paid
        order = order_transition_returning(
            lookup={"public_id": public_id, "amount_kopecks": amount_kopecks},
            target=OrderStatus.PAID,
            current=OrderStatus.NEW,
            **fields,
        )
        if order is not None:
            signals.order_paid.send(sender=Order, order_id=order.pk)
    return order


def order_cancel(*, order_id: int, current: str | None = None) -> TransitionResult:
    """NEW -> CANCELLED: the payment failed or expired."""
    return order_transition(order_id=order_id, target=OrderStatus.CANCELLED, current=current)


def order_refund(*, order_id: int, current: str | None = None) -> TransitionResult:
    """PAID/FULFILLED/PARTIALLY_REFUNDED -> REFUNDED; units not yet sent to a provider are never sent."""
    with transaction.atomic():
        result = order_transition(order_id=order_id, target=OrderStatus.REFUNDED, current=current)
        if result.changed:
            signals.order_refunded.send(sender=Order, order_id=order_id)
    return result


def order_mark_partially_refunded(*, order_id: int) -> TransitionResult:
    """PAID -> PARTIALLY_REFUNDED; the caller has checked that every unit is delivered or refunded.

    Its delivered units have codes the customer must receive, as for FULFILLED: listeners of
    `order_fulfilled` (the codes email's outbox row) act in the same transaction.
    """
    with transaction.atomic(savepoint=False):
        result = order_transition(order_id=order_id, target=OrderStatus.PARTIALLY_REFUNDED)
        if result.changed:
            signals.order_fulfilled.send(sender=Order, order_id=order_id)
    return result


def order_mark_fulfilled(*, order_id: int) -> TransitionResult:
    """PAID -> FULFILLED; the caller has checked that every unit is delivered.

    Listeners of `order_fulfilled` (the codes email's outbox row) act in the same transaction.
    """
    # No savepoint, as in order_mark_paid: a database error rolls the caller's whole transaction
    # back. An illegal transition is no database error: it leaves the block normally and is
    # raised after it, so a caller's transaction stays usable (reconciliation catches it).
    illegal = None
    with transaction.atomic(savepoint=False):
        try:
            result = order_transition(order_id=order_id, target=OrderStatus.FULFILLED)
        except IllegalTransition as exc:
            illegal = exc
        else:
            if result.changed:
                signals.order_fulfilled.send(sender=Order, order_id=order_id)
    if illegal is not None:
        raise illegal
    return result
