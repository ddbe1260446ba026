"""The ledger of a payment, checked before money or goods move, and the flags that stop an order.

For every payment: delivered value + value of purchases in flight + refunds (ours and portal,
made or in flight) <= amount paid. A refund whose Cancel would break it is not sent, and the
order is flagged for staff; an open blocking flag (`BLOCKING_FLAG_KINDS`) stops every automatic
purchase and refund of the order until staff resolve it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db.models import Q, Sum

from fulfillment.models import BLOCKING_FLAG_KINDS, OrderFlag
from fulfillment.selectors import order_units_value
from fulfillment.services import order_flag_raise
from orders.models import Order, Payment, Refund
from orders.refund_state import IN_FLIGHT, RefundState

logger = logging.getLogger(__name__)


def holds_place_q() -> Q:
    """Refunds the bank may be making: at most one per payment (a unique constraint)."""
    return Q(state__in=IN_FLIGHT) | Q(state=RefundState.FAILED, cancel_may_be_at_bank=True)


@dataclass(frozen=True)
class PaymentLedger:
    """Where one payment's money is, in kopecks."""

    payment_id: str
    paid: int
    delivered: int  # units delivered (not refunded), for the order's own payment
    delivering: int  # purchases in flight at the provider
    refunded: int  # refunds the bank made (ours and portal)
    refunding: int  # the refund the bank may be making now

    @property
    def committed(self) -> int:
        return self.delivered + self.delivering + self.refunded + self.refunding

    def allows(self, amount: int) -> bool:
        """Whether `amount` more (a refund or a purchase) keeps the ledger within what was paid."""
        return self.committed + amount <= self.paid


def refunds_value(refunds) -> tuple[int, int]:
    """(made, in flight) of a queryset of refunds."""
    values = refunds.aggregate(
        refunded=Sum("amount_kopecks", filter=Q(state=RefundState.SUCCEEDED)),
        refunding=Sum("amount_kopecks", filter=holds_place_q()),
    )
    return int(values["refunded"] or 0), int(values["refunding"] or 0)


def payment_ledger(*, payment: Payment, own: bool | None = None) -> PaymentLedger:
    """The ledger of one payment; `own`: whether it is its order's own payment (asked if None)."""
    if own is None:
        own = Order.objects.filter(pk=payment.order_id, payment_id=payment.payment_id).exists()
    delivered, delivering = order_units_value(order_id=payment.order_id) if own else (0, 0)
    refunded, refunding = refunds_value(Refund.objects.filter(payment=payment))
    return PaymentLedger(
        payment_id=payment.payment_id,
        paid=payment.amount_kopecks if payment.captured_at or own else 0,
        delivered=delivered,
        delivering=delivering,
        refunded=refunded,
        refunding=refunding,
    )


def order_blocked(*, order_id: int) -> bool:
    """Whether an open flag stops the order's automatic purchases and refunds."""
    return OrderFlag.objects.filter(order_id=order_id, kind__in=BLOCKING_FLAG_KINDS, resolved_at__isnull=True).exists()


def ledger_flag(*, order_id: int, reason: str) -> None:
    order_flag_raise(order_id=order_id, kind="ledger", reason=reason)
    logger.error("Order %s: the ledger would break: %s", order_id, reason)
