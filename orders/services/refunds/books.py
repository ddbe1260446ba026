"""The order's money: what was refunded to the customer, and where every kopeck of it is."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db.models import Sum

from fulfillment.selectors import order_units_value
from orders.models import Order, Payment, Refund
from orders.refund_state import RefundState
from orders.services.refunds.common import PAID_STATUSES
from orders.services.refunds.ledger import refunds_value
from orders.unit_status import unit_status

logger = logging.getLogger(__name__)


def order_refunded_kopecks(*, order_id: int) -> int:
    """Money returned to the customer for the order's own purchase, in kopecks: the refunds of
    the order's payment that the bank has made (ours and those made in its portal). Refunds of
    a second, extra payment (double payments) are excluded: that money was never the price of
    the goods. Refunds decided but not yet made are not counted."""
    order = Order.objects.filter(pk=order_id).values("payment_id").first()
    if order is None or not order["payment_id"]:
        return 0
    total = Refund.objects.filter(
        order_id=order_id, payment__payment_id=order["payment_id"], state=RefundState.SUCCEEDED
    ).aggregate(total=Sum("amount_kopecks"))["total"]
    return int(total or 0)


def unit_customer_status(*, status: str) -> str:
    """The status a customer sees for a unit in Delivery `status`: waiting, in_progress,
    delivered, failed, refunding (its refund decided, sent, or refused and with staff) or
    refunded (the bank made the refund)."""
    return unit_status(status)


@dataclass(frozen=True)
class MoneyBalance:
    """Where an order's money is, in kopecks: the order page's "money balance", read from the
    payment ledger (`ledger.payment_ledger`). `outstanding` is held by the shop for units not
    delivered nor refunded yet (0 for an order in a final status); refunds decided or sent but
    not confirmed are `refunding`, and still part of `outstanding`."""

    paid: int
    delivered: int
    refunded: int
    refunding: int
    extra_paid: int
    extra_refunded: int
    delivering: int = 0  # purchases in flight at the provider
    in_flight: int = 0  # the one refund of the order's payment the bank may be making

    @property
    def outstanding(self) -> int:
        return self.paid + self.extra_paid - self.delivered - self.refunded - self.extra_refunded

    @property
    def ledger_ok(self) -> bool:
        """delivered + purchases in flight + refunds made or in flight <= paid (the invariant)."""
        return self.delivered + self.delivering + self.refunded + self.in_flight <= self.paid


def order_money_balance(*, order_id: int) -> MoneyBalance:
    """The order's money, from the ledger's own pieces (a fixed number of queries)."""
    order = Order.objects.only("payment_id", "status", "amount_kopecks").get(pk=order_id)
    own_payment = Payment.objects.filter(payment_id=order.payment_id, order_id=order_id).first()
    if own_payment is not None:
        paid = own_payment.amount_kopecks
    else:  # paid before Payment rows existed
        paid = order.amount_kopecks if order.status in PAID_STATUSES else 0
    delivered, delivering = order_units_value(order_id=order_id)
    own_refunds = Refund.objects.filter(order_id=order_id, payment__payment_id=order.payment_id)
    refunded, in_flight = refunds_value(own_refunds)
    decided = own_refunds.filter(state=RefundState.DECIDED).aggregate(t=Sum("amount_kopecks"))["t"] or 0
    # Second, extra payments (double payments).
    extra = Payment.objects.filter(order_id=order_id, captured_at__isnull=False).exclude(payment_id=order.payment_id)
    extra_paid = extra.aggregate(t=Sum("amount_kopecks"))["t"] or 0
    extra_refunded = (
        Refund.objects.filter(payment__in=extra, state=RefundState.SUCCEEDED).aggregate(t=Sum("amount_kopecks"))["t"]
        or 0
    )
    return MoneyBalance(
        paid=int(paid),
        delivered=delivered,
        refunded=refunded,
        refunding=in_flight + int(decided),
        extra_paid=int(extra_paid),
        extra_refunded=int(extra_refunded),
        delivering=delivering,
        in_flight=in_flight,
    )
