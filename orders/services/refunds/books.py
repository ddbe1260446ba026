"""The order's money: what was refunded to the customer, and where every kopeck of it is."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db.models import Sum

from fulfillment.models import Delivery, DeliveryStatus
from orders.models import Order, Payment, Refund
from orders.refund_state import RefundState
from orders.services.refunds.common import PAID_STATUSES

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
    from orders.status import unit_status

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
    from orders.services.refunds.ledger import payment_ledger

    order = Order.objects.only("payment_id", "status", "amount_kopecks").get(pk=order_id)
    own_payment = Payment.objects.filter(payment_id=order.payment_id, order_id=order_id).first()
    decided = Refund.objects.filter(order_id=order_id, state=RefundState.DECIDED)
    if own_payment is not None:
        ledger = payment_ledger(payment=own_payment)
        paid, delivered, delivering = ledger.paid, ledger.delivered, ledger.delivering
        refunded, in_flight = ledger.refunded, ledger.refunding
    else:  # paid before Payment rows existed
        paid = order.amount_kopecks if order.status in PAID_STATUSES else 0
        delivered = (
            Delivery.objects.filter(order_id=order_id, status=DeliveryStatus.DELIVERED, refund__isnull=True).aggregate(
                value=Sum("item__unit_price_kopecks")
            )["value"]
            or 0
        )
        delivering = refunded = in_flight = 0
    extra = Payment.objects.filter(order_id=order_id, captured_at__isnull=False).exclude(
        pk=getattr(own_payment, "pk", None)
    )
    extra_paid = extra_refunded = 0
    for payment in extra:
        ledger = payment_ledger(payment=payment)
        extra_paid += ledger.paid
        extra_refunded += ledger.refunded
    refunding = in_flight + int(
        decided.filter(payment=own_payment).aggregate(t=Sum("amount_kopecks"))["t"] or 0 if own_payment else 0
    )
    return MoneyBalance(
        paid=int(paid),
        delivered=int(delivered),
        refunded=int(refunded),
        refunding=int(refunding),
        extra_paid=int(extra_paid),
        extra_refunded=int(extra_refunded),
        delivering=int(delivering),
        in_flight=int(in_flight),
    )
