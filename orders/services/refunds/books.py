"""The order's money: what was refunded to the customer, and where every kopeck of it is."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db.models import Q, Sum

from fulfillment.models import Delivery, DeliveryStatus
from orders.models import Order, Payment, Refund
from orders.refund_state import OPEN, RefundState
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
    """Where an order's money is, in kopecks. `outstanding` is held by the shop for units not
    delivered nor refunded yet (0 for an order in a final status); refunds decided or sent but
    not confirmed are `refunding`, and still part of `outstanding`."""

    paid: int
    delivered: int
    refunded: int
    refunding: int
    extra_paid: int
    extra_refunded: int

    @property
    def outstanding(self) -> int:
        return self.paid + self.extra_paid - self.delivered - self.refunded - self.extra_refunded


def order_money_balance(*, order_id: int) -> MoneyBalance:
    order = Order.objects.only("payment_id", "status", "amount_kopecks").get(pk=order_id)
    own = Q(payment__payment_id=order.payment_id) if order.payment_id else Q(pk__in=[])
    refunds = Refund.objects.filter(order_id=order_id).aggregate(
        refunded=Sum("amount_kopecks", filter=own & Q(state=RefundState.SUCCEEDED)),
        refunding=Sum("amount_kopecks", filter=Q(state__in=OPEN)),
        extra_refunded=Sum("amount_kopecks", filter=~own & Q(state=RefundState.SUCCEEDED)),
    )
    captured = Payment.objects.filter(order_id=order_id, captured_at__isnull=False).aggregate(
        own=Sum("amount_kopecks", filter=Q(payment_id=order.payment_id)),
        extra=Sum("amount_kopecks", filter=~Q(payment_id=order.payment_id)),
    )
    paid = captured["own"]
    if paid is None:  # paid before Payment rows existed
        paid = order.amount_kopecks if order.status in PAID_STATUSES else 0
    delivered = Delivery.objects.filter(
        order_id=order_id, status=DeliveryStatus.DELIVERED, refund__isnull=True
    ).aggregate(value=Sum("item__unit_price_kopecks"))["value"]
    return MoneyBalance(
        paid=int(paid),
        delivered=int(delivered or 0),
        refunded=int(refunds["refunded"] or 0),
        refunding=int(refunds["refunding"] or 0),
        extra_paid=int(captured["extra"] or 0),
        extra_refunded=int(refunds["extra_refunded"] or 0),
    )
