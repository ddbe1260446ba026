"""The bank's notifications about money returned: our own refunds recognised, refunds made in
the bank's portal recorded, and which units a partial portal refund could cover."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus
from orders.models import Order, Payment, Refund, RefundAttempt, RefundReason
from orders.refund_state import RefundState, refund_transition
from orders.services.refunds.common import FULL_RETURN_STATUSES
from orders.services.refunds.ledger import holds_place_q
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

    The one refund of ours the bank may be making is settled when the change is exactly its
    amount; an amount already accounted for is a duplicate or a late, out-of-order
    notification; a change no refund of ours explains was made in the bank's portal and is
    recorded as a PORTAL refund (the caller binds it to units).
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
    # At most one refund of ours may be at the bank (a unique constraint): the change is either
    # exactly that one, or not (only) ours. Never matched by amount among several.
    holder = payment.refunds.filter(holds_place_q()).first()
    if holder is not None and new == holder.amount_kopecks:
        _settle_from_notification(holder, status=status, payload=payload)
        return RefundMatch("ours", refunds=[holder])
    if holder is not None and new > holder.amount_kopecks:
        # Ours may be in it or not; at least the rest went back outside the service. Ours is
        # settled by its own evidence (its Cancel's answer, GetState), which also records any
        # further change none of ours explains.
        new -= holder.amount_kopecks
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


def portal_full_refund_withdraw_decided(*, order_id: int, refund: Refund) -> list[int]:
    """The whole payment went back through the portal: our refunds of it decided but not sent yet
    are withdrawn (the bank would refuse them anyway, and their money is already returned), and
    their units are refunded by the portal refund. A refund a worker has already taken to send
    is not withdrawn here (the conditional move loses): the bank answers it, and the ledger
    check before each Cancel stops one that would exceed the payment. Returns the ids withdrawn."""
    withdrawn = []
    decided = Refund.objects.filter(order_id=order_id, payment_id=refund.payment_id, state=RefundState.DECIDED)
    for refund_id in decided.exclude(pk=refund.pk).order_by("id").values_list("pk", flat=True):
        if refund_transition(
            refund_id=refund_id,
            target=RefundState.WITHDRAWN,
            sources=(RefundState.DECIDED,),
            queued_at=None,
            last_message=f"Withdrawn before sending: the whole payment was refunded in the T-Bank portal "
            f"(refund {refund.pk}).",
        ):
            withdrawn.append(refund_id)
    if withdrawn:
        Delivery.objects.filter(refund_id__in=withdrawn, status=DeliveryStatus.REFUNDING).update(
            status=DeliveryStatus.REFUNDED,
            refund=refund,
            last_message=f"Refunded in the T-Bank portal (refund {refund.pk}).",
        )
        logger.info(
            "Order %s: refund(s) %s withdrawn, the whole payment was refunded in the portal", order_id, withdrawn
        )
    return withdrawn


def portal_full_refund_link_units(*, order_id: int, refund: Refund) -> int:
    """A whole-order refund made in the portal covers every unit no other refund covers: they
    are refunded. FAILED and WAITING units will never be delivered now; units in flight resolve
    as they will (see fulfillment's refunded orders). When it covers goods delivered or perhaps
    being delivered, the customer may have both: the order is flagged for staff."""
    from fulfillment.services import order_flag_raise

    portal_full_refund_withdraw_decided(order_id=order_id, refund=refund)
    uncovered = Delivery.objects.filter(order_id=order_id, refund__isnull=True)
    given = list(
        uncovered.filter(
            status__in=(DeliveryStatus.DELIVERED, DeliveryStatus.SENDING, DeliveryStatus.PENDING)
        ).select_related("item__product")
    )
    linked = uncovered.exclude(status=DeliveryStatus.FAILED).update(refund=refund)
    linked += uncovered.filter(status=DeliveryStatus.FAILED).update(
        refund=refund, status=DeliveryStatus.REFUNDED, last_message="Refunded in the T-Bank portal."
    )
    if given:
        names = "; ".join(f"{unit.item.product.name} for {unit.item.recipient} ({unit.status})" for unit in given)
        order_flag_raise(
            order_id=order_id,
            kind="goods_and_money",
            reason=(
                f"The whole payment was refunded in the T-Bank portal (refund {refund.pk}), including "
                f"{len(given)} unit(s) delivered or being delivered: {names}. The customer may have the goods and "
                "the money: settle it with the customer, then resolve this flag."
            ),
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


def portal_refund_apply(*, order: Order, payment: Payment, amount: int, status: str) -> str:
    """Record `amount` kopecks of `payment` refunded outside the service (seen in a Cancel
    answer or GetState) and act on it as on the portal's notification. Returns what was done."""
    refund = portal_refund_record(order, payment, amount, status)
    if payment.payment_id != order.payment_id:
        return f"Recorded as refund {refund.pk} of the extra payment {payment.payment_id}."
    payment.refresh_from_db(fields=["refunded_kopecks"])
    if payment.refunded_kopecks >= payment.amount_kopecks:
        from orders.services.lifecycle import order_refund
        from orders.state import IllegalTransition, OrderStatus

        portal_full_refund_link_units(order_id=order.pk, refund=refund)
        current = Order.objects.values_list("status", flat=True).get(pk=order.pk)
        if current in (OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED):
            try:
                order_refund(order_id=order.pk, current=current)
            except IllegalTransition:
                pass
        return f"The whole payment was refunded outside the service (refund {refund.pk}); the order is refunded."
    return portal_partial_refund_bind(order_id=order.pk, refund=refund)[1]


def portal_partial_refund_bind(*, order_id: int, refund: Refund) -> tuple[bool, str]:
    """Bind a partial portal refund to undelivered units (waiting, held or failed, not refunded)
    whose prices add up to it: they are never bought afterwards and are marked refunded. When
    no such set exists (or the refund covers delivered goods), the order is flagged for staff
    with the candidates named, which stops its automatic purchases and refunds. Returns (bound,
    what was done) for the notification's record."""
    from fulfillment.services import order_flag_raise
    from orders.services.refunds.closing import order_settle

    amount = refund.amount_kopecks
    units = list(
        Delivery.objects.filter(
            order_id=order_id, refund__isnull=True, status__in=(DeliveryStatus.WAITING, DeliveryStatus.FAILED)
        )
        .select_related("item__product")
        .order_by("item_id", "unit_index")
    )
    per_item: dict[int, list[Delivery]] = {}
    for unit in units:
        per_item.setdefault(unit.item_id, []).append(unit)
    items = [
        {"price": group[0].item.unit_price_kopecks, "count": len(group), "undelivered": len(group)}
        for group in per_item.values()
    ]
    solution = _counts_adding_up(items, amount)
    chosen = (
        [unit for group, count in zip(per_item.values(), solution, strict=True) for unit in group[:count]]
        if solution
        else []
    )
    if chosen:
        with transaction.atomic():
            # Conditional: a unit the delivery run sent meanwhile (WAITING -> SENDING) is not taken.
            bound = Delivery.objects.filter(
                pk__in=[unit.pk for unit in chosen],
                refund__isnull=True,
                status__in=(DeliveryStatus.WAITING, DeliveryStatus.FAILED),
            ).update(
                status=DeliveryStatus.REFUNDED,
                refund=refund,
                claim_token="",
                claim_expires_at=None,
                next_attempt_at=None,
                last_message=f"Refunded in the T-Bank portal (refund {refund.pk}); never sent afterwards.",
            )
            if bound != len(chosen):
                transaction.set_rollback(True)
                chosen = []
    if chosen:
        Delivery.objects.filter(refund=refund).update(
            last_message=f"Refunded in the T-Bank portal (refund {refund.pk})."
        )
        order_settle(order_id=order_id)
        names = ", ".join(f"{unit.item.product.name} for {unit.item.recipient}" for unit in chosen)
        return True, f"Bound to {len(chosen)} undelivered unit(s), now refunded and never sent: {names}."
    reason = (
        f"{amount / 100:.2f} RUB refunded in the T-Bank portal (refund {refund.pk}) matches no set of undelivered "
        f"units. {candidate_units_text(order_id=order_id, amount=amount)} Automatic purchases and refunds of this "
        "order are stopped: decide in the admin (refund or deliver the units), then resolve this flag."
    )
    order_flag_raise(order_id=order_id, kind="portal_refund", reason=reason)
    logger.error("Order %s: %s", order_id, reason)
    return False, reason
