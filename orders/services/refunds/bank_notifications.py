"""The bank's notifications about money returned: our own refunds recognised, refunds made in
the bank's portal recorded, and which units a partial portal refund could cover."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus
from orders.models import Order, Payment, Refund, RefundAttempt, RefundReason
from orders.refund_state import IN_FLIGHT, RefundState
from orders.services.refunds.common import FULL_RETURN_STATUSES
from orders.services.refunds.sending import refund_mark_succeeded

logger = logging.getLogger(__name__)


@dataclass
class RefundMatch:
    """What a REFUNDED / PARTIAL_REFUNDED notification meant for one payment."""

    kind: str  # "ours", "duplicate", "portal", "unknown"
    refunds: list[Refund] = field(default_factory=list)
    portal_amount: int = 0
    portal_refund: Refund | None = None

    @property
    def ids(self) -> str:
        return ", ".join(str(refund.pk) for refund in self.refunds)


def refund_notification_apply(
    *, order: Order, payment: Payment, status: str, amount: Any, payload: dict[str, Any]
) -> RefundMatch:
    """Account for money the bank says went back from `payment` (the caller holds the order's
    row lock). The notification's Amount is the payment's amount left after the refund.

    Ours (matched to refunds in flight, by the amount they explain) are settled; an amount
    already accounted for is a duplicate or a late, out-of-order notification; what is left
    was refunded in the bank's portal and is recorded as a PORTAL refund.
    """
    payment = Payment.objects.select_for_update().get(pk=payment.pk)
    known = payment.refunded_kopecks
    full = status in FULL_RETURN_STATUSES
    if full:
        bank_refunded = payment.amount_kopecks
    elif isinstance(amount, int) and not isinstance(amount, bool) and 0 <= amount < payment.amount_kopecks:
        bank_refunded = payment.amount_kopecks - amount
    else:
        return RefundMatch("unknown")
    succeeded = list(payment.refunds.filter(state=RefundState.SUCCEEDED).order_by("id"))
    if bank_refunded <= known:
        return RefundMatch("duplicate", refunds=succeeded)
    new = bank_refunded - known
    in_flight = list(payment.refunds.filter(state__in=IN_FLIGHT).order_by("id"))
    matched: list[Refund] = []
    total = 0
    for refund in in_flight:
        total += refund.amount_kopecks
        matched.append(refund)
        if total == new:
            break
    else:
        if not full:
            # Some banks report the refunded amount rather than the amount left: accept that too,
            # for a refund of ours in flight, rather than send staff after our own refund.
            matched = [refund for refund in in_flight if refund.amount_kopecks == amount][:1]
            total = sum(refund.amount_kopecks for refund in matched)
        elif total > new:
            matched, total = [], 0
    if matched and (total == new or full):
        for refund in matched:
            _settle_from_notification(refund, status=status, payload=payload)
        rest = new - total
        if rest > 0:  # a full refund: whatever ours did not cover was refunded in the portal
            portal = portal_refund_record(order, payment, rest, status)
            return RefundMatch("ours", refunds=matched, portal_amount=rest, portal_refund=portal)
        return RefundMatch("ours", refunds=matched)
    return RefundMatch("portal", portal_amount=new, portal_refund=portal_refund_record(order, payment, new, status))


def _settle_from_notification(refund: Refund, *, status: str, payload: dict[str, Any]) -> None:
    now = timezone.now()
    RefundAttempt.objects.create(
        refund=refund,
        method="Notification",
        request={},
        answer={key: value for key, value in payload.items() if key != "Token"},
        outcome="succeeded",
        message=f"{status} notification matched to this refund.",
        started_at=now,
        finished_at=now,
    )
    refund_mark_succeeded(refund_id=refund.pk, bank_status=status, via=f"{status} notification")


def portal_refund_record(order: Order, payment: Payment, amount: int, status: str) -> Refund:
    """Record money the bank returned from `payment` that no refund of ours asked for (made in
    the T-Bank portal): a PORTAL refund, born SUCCEEDED, so the order's books add up."""
    refund = Refund.objects.create(
        order=order,
        payment=payment,
        amount_kopecks=amount,
        reason=RefundReason.PORTAL,
        decided_by="bank portal (learned from a T-Bank notification)",
        state=RefundState.SUCCEEDED,
        full=status in FULL_RETURN_STATUSES,
        bank_status=status[:40],
        settled_at=timezone.now(),
        last_message="Made outside this service (T-Bank portal); recorded for the books.",
    )
    Payment.objects.filter(pk=payment.pk).update(
        refunded_kopecks=F("refunded_kopecks") + amount, bank_status=status[:40]
    )
    logger.warning(
        "Order %s: %s kopecks of PaymentId %s refunded outside the service", order.pk, amount, payment.payment_id
    )
    return refund


def portal_full_refund_link_units(*, order_id: int, refund: Refund) -> int:
    """A whole-order refund made in the portal covers every unit no other refund covers: they
    are refunded (delivered ones included: their money went back too). FAILED units will never
    be delivered now; units in flight resolve as they will (see fulfillment's refunded orders)."""
    uncovered = Delivery.objects.filter(order_id=order_id, refund__isnull=True)
    linked = uncovered.exclude(status=DeliveryStatus.FAILED).update(refund=refund)
    linked += uncovered.filter(status=DeliveryStatus.FAILED).update(
        refund=refund, status=DeliveryStatus.REFUNDED, last_message="Refunded in the T-Bank portal."
    )
    return linked


def candidate_units_text(*, order_id: int, amount: int) -> str:
    """Which units a partial refund of `amount` kopecks could cover: counts per item whose
    prices add up to it (units not delivered first), for staff reviewing a portal refund."""
    rows = list(
        Delivery.objects.filter(order_id=order_id, refund__isnull=True)
        .values("item_id", "item__product__name", "item__recipient", "item__unit_price_kopecks", "status")
        .order_by("item_id")
    )
    per_item: dict[int, dict[str, Any]] = {}
    for row in rows:
        entry = per_item.setdefault(
            row["item_id"],
            {
                "name": row["item__product__name"],
                "recipient": row["item__recipient"],
                "price": row["item__unit_price_kopecks"],
                "count": 0,
                "undelivered": 0,
            },
        )
        entry["count"] += 1
        entry["undelivered"] += row["status"] != DeliveryStatus.DELIVERED
    items = list(per_item.values())
    solution = _counts_adding_up(items, amount)
    if solution is None:
        return f"No combination of this order's unrefunded units adds up to {amount / 100:.2f} RUB."
    parts = [
        f"{count} x {item['name']} for {item['recipient']} ({item['price'] / 100:.2f} RUB each)"
        for item, count in zip(items, solution, strict=True)
        if count
    ]
    return f"Units whose prices add up to {amount / 100:.2f} RUB: " + "; ".join(parts) + "."


def _counts_adding_up(items: list[dict[str, Any]], amount: int, limit: int = 20000) -> list[int] | None:
    """Counts per item (at most its units, undelivered ones preferred) summing to `amount`."""
    steps = [0]

    def search(index: int, left: int) -> list[int] | None:
        steps[0] += 1
        if left == 0:
            return [0] * (len(items) - index)
        if index == len(items) or steps[0] > limit:
            return None
        item = items[index]
        most = min(item["count"], left // item["price"]) if item["price"] else 0
        # Undelivered units first: a refund normally covers what was not delivered.
        order = sorted(range(most, -1, -1), key=lambda n: (n > item["undelivered"], -n))
        for count in order:
            rest = search(index + 1, left - count * item["price"])
            if rest is not None:
                return [count, *rest]
        return None

    return search(0, amount)
