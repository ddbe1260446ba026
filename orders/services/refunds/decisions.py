"""Deciding refunds (which units may be refunded, undeliverable units, double payments) and
closing the order once every unit is delivered or refunded."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus, ProviderHalt
from fulfillment.providers.base import NOT_THE_UNITS_SCOPES
from fulfillment.selectors import (
    STOPPED_CODE,
    failed_units_uncovered,
    held_units,
    unit_may_have_been_delivered,
    units_in_progress,
)
from fulfillment.services import units_stop_held, units_take_for_refund
from fulfillment_site.logs import order_log_extra
from orders.models import Order, Payment, Refund, RefundReason
from orders.refund_state import RefundState
from orders.services.refunds.closing import order_settle
from orders.services.refunds.common import RefundNotPossible
from orders.services.refunds.ledger import order_blocked
from orders.services.refunds.sending import refund_queue
from orders.state import OrderStatus
from orders.tbank.receipts import ReceiptError, ReceiptLine, receipt_build

logger = logging.getLogger(__name__)

FAULTS_NOT_THE_UNITS = NOT_THE_UNITS_SCOPES


@dataclass
class UndeliveredPreview:
    """What "Refund undelivered units" would refund for one order, shown before staff confirm."""

    order_id: int
    units: list[Delivery] = field(default_factory=list)
    unknown: list[Delivery] = field(default_factory=list)  # included only when staff confirm them
    held: list[Delivery] = field(default_factory=list)  # never refunded here (provider halted)
    # WAITING units a halt or pause holds back: refunded only when staff confirm stopping them.
    waiting_held: list[Delivery] = field(default_factory=list)
    problem: str = ""
    nothing_to_refund: bool = False  # a paid order with nothing in progress and no failed unit

    @property
    def amount_kopecks(self) -> int:
        return sum(unit.item.unit_price_kopecks for unit in self.units)


def undelivered_units_preview(
    *, order_id: int, include_unknown: bool = False, include_held: bool = False
) -> UndeliveredPreview:
    """The FAILED units of a PAID order that a refund would cover, and why others are left out.

    Units that a halt or pause holds back (WAITING, never sent since) are listed apart; with
    `include_held` they count as refunded too: the decision stops them first."""
    preview = UndeliveredPreview(order_id=order_id)
    status = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
    if status is None:
        preview.problem = f"Order {order_id} does not exist."
        return preview
    if status != OrderStatus.PAID:
        preview.problem = f"Order {order_id} is {status}: only a paid order's undelivered units are refunded here."
        return preview
    held_waiting = list(held_units(order_id=order_id).select_related("item__product").order_by("pk"))
    held_ids = {unit.pk for unit in held_waiting}
    open_units = units_in_progress(order_id=order_id).exclude(pk__in=held_ids).count()
    if open_units:
        preview.problem = (
            f"Order {order_id} has {open_units} unit(s) still being delivered: refund once they have settled, so "
            "one refund covers every unit that failed."
        )
        return preview
    if include_held:
        preview.units.extend(held_waiting)
    else:
        preview.waiting_held = held_waiting
    halted = set(ProviderHalt.objects.values_list("provider", flat=True))
    for unit in failed_units_uncovered(order_id=order_id).select_related("item__product"):
        # Failed by a fault that was not the unit's (a halted provider, a paused product, the shop's
        # setup): the unit goes back to waiting once the fault clears, so it is not refunded.
        if unit.last_code == STOPPED_CODE:
            preview.units.append(unit)  # stopped by staff while held: to be refunded, whatever holds its provider
        elif (unit.provider and unit.provider in halted) or unit.failure_scope in FAULTS_NOT_THE_UNITS:
            preview.held.append(unit)
        elif unit_may_have_been_delivered(unit):
            (preview.units if include_unknown else preview.unknown).append(unit)
        else:
            preview.units.append(unit)
    if not preview.units:
        preview.nothing_to_refund = True
        preview.problem = f"Order {order_id} has no failed unit to refund."
        if preview.unknown:
            preview.problem += (
                f" {len(preview.unknown)} failed unit(s) may have been delivered (unknown outcome): ask the provider "
                "first, then confirm refunding them."
            )
        if preview.held:
            preview.problem += f" {len(preview.held)} failed unit(s) wait for a halted provider."
        if preview.waiting_held:
            preview.nothing_to_refund = False
            preview.problem = (
                f"Order {order_id} has {len(preview.waiting_held)} unit(s) held by a paused product or a halted "
                "provider: confirm stopping them to refund them."
            )
    return preview


def _primary_payment(order: Order) -> Payment:
    """The order's own payment row (created for orders paid before Payment rows existed)."""
    if not order.payment_id:
        raise RefundNotPossible(
            f"Order {order.pk} has no T-Bank PaymentId recorded, so it cannot be refunded through the bank; "
            "refund it in the T-Bank portal."
        )
    payment, _ = Payment.objects.get_or_create(
        payment_id=order.payment_id,
        defaults={
            "order": order,
            "amount_kopecks": order.amount_kopecks,
            "bank_status": "CONFIRMED",
            "captured_at": order.paid_at,
        },
    )
    if payment.order_id != order.pk:
        raise RefundNotPossible(
            f"PaymentId {order.payment_id} of order {order.pk} is recorded for order {payment.order_id}; "
            "check both orders in the admin."
        )
    return payment


def _receipt_settings() -> dict[str, str]:
    """The receipt settings the sale's receipt was built with (Init): a refund's receipt mirrors them."""
    return {
        "taxation": settings.TBANK_RECEIPT_TAXATION,
        "tax": settings.TBANK_RECEIPT_TAX,
        "payment_method": settings.TBANK_RECEIPT_PAYMENT_METHOD,
        "payment_object": settings.TBANK_RECEIPT_PAYMENT_OBJECT,
    }


def _receipt_for(order: Order, units: list[Delivery]) -> dict[str, Any] | None:
    """The receipt of a partial refund: the sale's lines for only the refunded units, with the
    sale's receipt settings; none when receipts are off (the sale had none either)."""
    if not settings.TBANK_RECEIPT_ENABLED:
        return None
    if not order.customer_email:
        return None  # nothing to address a receipt to; a terminal with a kassa refuses (code 309 or 329)
    per_item = Counter(unit.item_id for unit in units)
    items = {unit.item_id: unit.item for unit in units}
    lines = [
        ReceiptLine(name=items[item_id].product.name, price=items[item_id].unit_price_kopecks, quantity=count)
        for item_id, count in sorted(per_item.items())
    ]
    try:
        return receipt_build(lines=lines, email=order.customer_email, **_receipt_settings())
    except ReceiptError as exc:
        raise RefundNotPossible(f"Order {order.pk}: the refund's receipt cannot be built: {exc}") from exc


def refund_decide_undelivered(
    *,
    order_id: int,
    decided_by: str,
    user=None,
    include_unknown: bool = False,
    include_held: bool = False,
    reason: str = RefundReason.UNDELIVERABLE,
) -> Refund | None:
    """Decide one refund of every FAILED unit of a PAID order that nothing is delivering any more,
    and queue it to be sent once the transaction commits. None when there is nothing to refund.

    Units whose outcome is unknown (the provider may have delivered them) are included only
    with `include_unknown` (staff, after checking with the provider); units of a halted provider
    never are. With `include_held` (staff), units a halt or pause holds back are stopped first
    (fulfillment.services.units_stop_held) and refunded with them, in the same transaction.
    Raises RefundNotPossible when the order is not PAID or still has units in progress.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update(no_key=True).filter(pk=order_id).first()
        if order is None:
            raise RefundNotPossible(f"Order {order_id} does not exist.")
        if include_held and order.status == OrderStatus.PAID:
            units_stop_held(order_id=order_id, stopped_by=decided_by)
        preview = undelivered_units_preview(order_id=order_id, include_unknown=include_unknown)
        if not preview.units:
            if preview.nothing_to_refund:
                return None
            raise RefundNotPossible(preview.problem)
        units = preview.units
        if include_held and any(unit.status != DeliveryStatus.FAILED for unit in units):
            raise RefundNotPossible(f"Order {order_id}: a held unit could not be stopped; try again.")
        payment = _primary_payment(order)
        amount = preview.amount_kopecks
        others = payment.refunds.exclude(state=RefundState.FAILED).exists()
        full = amount == payment.amount_kopecks and payment.refunded_kopecks == 0 and not others
        refund = Refund.objects.create(
            order=order,
            payment=payment,
            amount_kopecks=amount,
            reason=reason,
            decided_by=decided_by[:150],
            decided_by_user=user,
            full=full,
            receipt=None if full else _receipt_for(order, units),
            queued_at=timezone.now(),
        )
        # The race with a staff retry is decided here, unit by unit: whoever moves a unit out of
        # FAILED first has it. Losing any unit means the amount is wrong, so nothing is kept.
        taken = units_take_for_refund(
            unit_ids=[unit.pk for unit in units],
            refund_id=refund.pk,
            message=f"Refund {refund.pk} decided by {decided_by}",
        )
        if taken != len(units):
            transaction.set_rollback(True)
            logger.info(
                "Refund of order %s not decided: %d of its units moved meanwhile",
                order_id,
                len(units) - taken,
                extra={"order": order.public_id},
            )
            return None
        refund_queue(refund_id=refund.pk)
    logger.info(
        "Refund %s decided for order %s: %s kopecks (%s)",
        refund.pk,
        order_id,
        amount,
        decided_by,
        extra={"order": order.public_id},
    )
    return refund


def refund_decide_double_payment(*, order: Order, payment: Payment) -> tuple[Refund | None, bool]:
    """Refund a second captured payment of an order in full; (refund, created). Exactly once per
    payment (a unique constraint), so a repeated CONFIRMED finds the refund already decided.
    The caller holds the order's row lock."""
    existing = Refund.objects.filter(payment=payment, reason=RefundReason.DOUBLE_PAYMENT).first()
    if existing is not None:
        return existing, False
    remaining = payment.amount_kopecks - payment.refunded_kopecks
    if remaining <= 0:
        return None, False
    refund = Refund.objects.create(
        order=order,
        payment=payment,
        amount_kopecks=remaining,
        reason=RefundReason.DOUBLE_PAYMENT,
        decided_by=f"system: second payment {payment.payment_id} for order {order.pk}",
        full=payment.refunded_kopecks == 0,
        receipt=None if payment.refunded_kopecks == 0 else _double_payment_receipt(order, remaining),
        queued_at=timezone.now(),
    )
    refund_queue(refund_id=refund.pk)
    logger.warning(
        "Order %s paid twice: refund %s of PaymentId %s decided",
        order.pk,
        refund.pk,
        payment.payment_id,
        extra={"order": order.public_id},
    )
    return refund, True


def _double_payment_receipt(order: Order, amount: int) -> dict[str, Any] | None:
    if not settings.TBANK_RECEIPT_ENABLED or not order.customer_email:
        return None
    line = ReceiptLine(name=f"Order {order.public_id}: second payment", price=amount, quantity=1)
    return receipt_build(lines=[line], email=order.customer_email, **_receipt_settings())


def order_settle_undelivered(*, order_id: int) -> str:
    """Nothing of the order is in progress any more: under REFUND_POLICY=auto refund the units
    that cannot be delivered, then close the order if it is done. Returns the order's status."""
    if settings.REFUND_POLICY == "auto" and not order_blocked(order_id=order_id):
        # A flagged order waits for staff: nothing automatic is refunded.
        try:
            refund_decide_undelivered(order_id=order_id, decided_by="system: undeliverable units (REFUND_POLICY=auto)")
        except RefundNotPossible as exc:
            logger.info("No automatic refund: %s", exc, extra=order_log_extra(order_id))
    return order_settle(order_id=order_id)
