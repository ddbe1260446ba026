"""Refunds made in the bank's portal: recorded as refunds of ours, bound to the undelivered units
whose prices add up to them, or flagged for staff with the candidates named."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.selectors import undelivered_units_uncovered, units_given_uncovered, units_uncovered
from fulfillment.services import (
    order_flag_raise,
    units_cover_by_full_refund,
    units_mark_refunded,
    units_note_refund,
    units_refund_unsent,
)
from orders.models import Order, Payment, Refund, RefundReason
from orders.refund_state import RefundState, refund_transition
from orders.services.lifecycle import order_refund
from orders.services.refunds.closing import order_settle
from orders.services.refunds.common import FULL_RETURN_STATUSES
from orders.state import IllegalTransition, OrderStatus

logger = logging.getLogger(__name__)


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
        units_mark_refunded(
            refund_ids=withdrawn, refund_id=refund.pk, message=f"Refunded in the T-Bank portal (refund {refund.pk})."
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
    portal_full_refund_withdraw_decided(order_id=order_id, refund=refund)
    given = list(units_given_uncovered(order_id=order_id).select_related("item__product"))
    linked = units_cover_by_full_refund(
        order_id=order_id, refund_id=refund.pk, message="Refunded in the T-Bank portal."
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
        units_uncovered(order_id=order_id)
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

    amount = refund.amount_kopecks
    units = list(undelivered_units_uncovered(order_id=order_id).select_related("item__product"))
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
            bound = units_refund_unsent(
                unit_ids=[unit.pk for unit in chosen],
                refund_id=refund.pk,
                message=f"Refunded in the T-Bank portal (refund {refund.pk}); never sent afterwards.",
            )
            if bound != len(chosen):
                transaction.set_rollback(True)
                chosen = []
    if chosen:
        units_note_refund(refund_id=refund.pk, message=f"Refunded in the T-Bank portal (refund {refund.pk}).")
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
