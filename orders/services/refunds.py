"""Refunds: deciding them, sending them to T-Bank (Cancel), recognising the bank's answers and
notifications, and closing the order once every unit is delivered or refunded.

Money-safety rules, and where each is enforced:

* A refund is decided in the transaction that moves its units FAILED -> REFUNDING, under the
  order's row lock, by a conditional UPDATE: a racing staff retry (FAILED -> WAITING) and a
  refund cannot both take a unit. Only FAILED units are refunded, so never a delivered one.
* Every Cancel of one refund carries the refund's own ExternalRequestId, so the bank refunds
  it once however often it is sent. After an unknown outcome (timeout, 5xx, a worker killed
  mid-call) the refund is CHECKING: GetState is asked before any repeat.
* A refund is settled (SUCCEEDED, Payment.refunded_kopecks increased, units REFUNDED) by one
  conditional transition, whichever comes first: our Cancel's answer, GetState, or the bank's
  notification. The others find it settled and change nothing.
* Lock order, everywhere: order row, then payment row, then refund row.
* Every bank call (and every notification that settles a refund) leaves a RefundAttempt.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.utils import timezone

from fulfillment.models import OPEN_STATUSES, REFUND_STATUSES, Delivery, DeliveryStatus, ProviderHalt
from orders import signals
from orders.models import Order, Payment, Refund, RefundAttempt, RefundReason
from orders.refund_state import IN_FLIGHT, OPEN, RefundState, refund_transition
from orders.services.emails import customer_email_enqueue
from orders.services.lifecycle import order_mark_fulfilled, order_mark_partially_refunded, order_refund
from orders.state import IllegalTransition, OrderStatus
from orders.tbank.client import TBankClient, TBankError, TBankRefused, TBankUnavailable, tbank_client
from orders.tbank.receipts import ReceiptError, ReceiptLine, receipt_build

logger = logging.getLogger(__name__)

#: Order statuses in which the order's own payment was captured.
PAID_STATUSES = (OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED)
#: Bank statuses saying every kopeck of a payment went back.
FULL_RETURN_STATUSES = frozenset({"REFUNDED", "REVERSED"})
PARTIAL_RETURN_STATUSES = frozenset({"PARTIAL_REFUNDED", "PARTIAL_REVERSED"})
#: Bank statuses in which a refund may still be under way: wait, do not send again.
_BUSY_STATUSES = frozenset({"REFUNDING", "ASYNC_REFUNDING", "REVERSING"})
# Rounds of Cancel / GetState in one run; what is still unknown after them waits for the sweep.
_MAX_ROUNDS = 3


class RefundNotPossible(Exception):
    """A refund cannot be decided now; the message names the order and what to do."""


# --- for the customer's status page (wired by the lead at merge) -----------------------------


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
    delivered, failed or refunded. A unit whose refund is decided already shows "refunded"
    (it will never be delivered; the money follows within the bank's delay)."""
    from orders.status import unit_status

    return unit_status(status)


# --- the order's books -----------------------------------------------------------------------


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


# --- which units may be refunded ------------------------------------------------------------


def _unknown_outcome(unit: Delivery) -> bool:
    """Whether the provider may have delivered this FAILED unit after all (see retries)."""
    from fulfillment.services.retries import _may_have_been_delivered

    return _may_have_been_delivered(unit)


@dataclass
class UndeliveredPreview:
    """What "Refund undelivered units" would refund for one order, shown before staff confirm."""

    order_id: int
    units: list[Delivery] = field(default_factory=list)
    unknown: list[Delivery] = field(default_factory=list)  # included only when staff confirm them
    held: list[Delivery] = field(default_factory=list)  # never refunded here (provider halted)
    problem: str = ""
    nothing_to_refund: bool = False  # a paid order with nothing in progress and no failed unit

    @property
    def amount_kopecks(self) -> int:
        return sum(unit.item.unit_price_kopecks for unit in self.units)


def undelivered_units_preview(*, order_id: int, include_unknown: bool = False) -> UndeliveredPreview:
    """The FAILED units of a PAID order that a refund would cover, and why others are left out."""
    preview = UndeliveredPreview(order_id=order_id)
    status = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
    if status is None:
        preview.problem = f"Order {order_id} does not exist."
        return preview
    if status != OrderStatus.PAID:
        preview.problem = f"Order {order_id} is {status}: only a paid order's undelivered units are refunded here."
        return preview
    open_units = Delivery.objects.filter(order_id=order_id, status__in=OPEN_STATUSES).count()
    if open_units:
        preview.problem = (
            f"Order {order_id} has {open_units} unit(s) still being delivered: refund once they have settled, so "
            "one refund covers every unit that failed."
        )
        return preview
    halted = set(ProviderHalt.objects.values_list("provider", flat=True))
    failed = Delivery.objects.filter(order_id=order_id, status=DeliveryStatus.FAILED, refund__isnull=True)
    for unit in failed.select_related("item__product").order_by("item_id", "unit_index"):
        if unit.provider and unit.provider in halted:
            preview.held.append(unit)
        elif _unknown_outcome(unit):
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
    return preview


# --- decisions -------------------------------------------------------------------------------


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


def _receipt_for(order: Order, units: list[Delivery]) -> dict[str, Any] | None:
    """The receipt of a partial refund: only the refunded units, grouped by item."""
    if not order.customer_email:
        return None  # nothing to address a receipt to; a terminal with a kassa refuses (code 309 or 329)
    per_item = Counter(unit.item_id for unit in units)
    items = {unit.item_id: unit.item for unit in units}
    lines = [
        ReceiptLine(name=items[item_id].product.name, price=items[item_id].unit_price_kopecks, quantity=count)
        for item_id, count in sorted(per_item.items())
    ]
    try:
        return receipt_build(
            lines=lines,
            email=order.customer_email,
            taxation=settings.TBANK_RECEIPT_TAXATION,
            tax=settings.TBANK_RECEIPT_TAX,
        )
    except ReceiptError as exc:
        raise RefundNotPossible(f"Order {order.pk}: the refund's receipt cannot be built: {exc}") from exc


def refund_decide_undelivered(
    *,
    order_id: int,
    decided_by: str,
    user=None,
    include_unknown: bool = False,
    reason: str = RefundReason.UNDELIVERABLE,
) -> Refund | None:
    """Decide one refund of every FAILED unit of a PAID order that nothing is delivering any more,
    and queue it to be sent once the transaction commits. None when there is nothing to refund.

    Units whose outcome is unknown (the provider may have delivered them) are included only
    with `include_unknown` (staff, after checking with the provider); units of a halted provider
    never are. Raises RefundNotPossible when the order is not PAID or still has units in progress.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            raise RefundNotPossible(f"Order {order_id} does not exist.")
        preview = undelivered_units_preview(order_id=order_id, include_unknown=include_unknown)
        if not preview.units:
            if preview.nothing_to_refund:
                return None
            raise RefundNotPossible(preview.problem)
        units = preview.units
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
        taken = Delivery.objects.filter(
            pk__in=[unit.pk for unit in units], status=DeliveryStatus.FAILED, refund__isnull=True
        ).update(
            status=DeliveryStatus.REFUNDING,
            refund=refund,
            claim_token="",
            claim_expires_at=None,
            next_attempt_at=None,
            last_message=f"Refund {refund.pk} decided by {decided_by}"[:500],
        )
        if taken != len(units):
            transaction.set_rollback(True)
            logger.info("Refund of order %s not decided: %d of its units moved meanwhile", order_id, len(units) - taken)
            return None
        refund_queue(refund_id=refund.pk)
    logger.info("Refund %s decided for order %s: %s kopecks (%s)", refund.pk, order_id, amount, decided_by)
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
    logger.warning("Order %s paid twice: refund %s of PaymentId %s decided", order.pk, refund.pk, payment.payment_id)
    return refund, True


def _double_payment_receipt(order: Order, amount: int) -> dict[str, Any] | None:
    if not order.customer_email:
        return None
    line = ReceiptLine(name=f"Order {order.public_id}: second payment", price=amount, quantity=1)
    return receipt_build(
        lines=[line],
        email=order.customer_email,
        taxation=settings.TBANK_RECEIPT_TAXATION,
        tax=settings.TBANK_RECEIPT_TAX,
    )


# --- where the order ends --------------------------------------------------------------------


def _order_unit_counts(order_id: int) -> dict[str, int]:
    return Delivery.objects.filter(order_id=order_id).aggregate(
        total=Count("id"),
        delivered=Count("id", filter=Q(status=DeliveryStatus.DELIVERED, refund__isnull=True)),
        refunded=Count("id", filter=Q(status=DeliveryStatus.REFUNDED)),
        unsettled=Count("id", filter=Q(status__in=(*OPEN_STATUSES, DeliveryStatus.FAILED, DeliveryStatus.REFUNDING))),
    )


def order_settle(*, order_id: int) -> str:
    """Move a PAID order to its final status once every unit is delivered or refunded (and the
    refund succeeded): FULFILLED, PARTIALLY_REFUNDED or REFUNDED. Returns the order's status."""
    counts = _order_unit_counts(order_id)
    status = Order.objects.filter(pk=order_id).values_list("status", flat=True).get()
    if status != OrderStatus.PAID or not counts["total"] or counts["unsettled"]:
        return status
    if counts["delivered"] + counts["refunded"] != counts["total"]:
        return status
    try:
        if counts["delivered"] == counts["total"]:
            return order_mark_fulfilled(order_id=order_id).current
        if counts["delivered"]:
            return order_mark_partially_refunded(order_id=order_id).current
        return order_refund(order_id=order_id, current=status).current
    except IllegalTransition as exc:
        return exc.current


def order_settle_undelivered(*, order_id: int) -> str:
    """Nothing of the order is in progress any more: under REFUND_POLICY=auto refund the units
    that cannot be delivered, then close the order if it is done. Returns the order's status."""
    if settings.REFUND_POLICY == "auto":
        try:
            refund_decide_undelivered(order_id=order_id, decided_by="system: undeliverable units (REFUND_POLICY=auto)")
        except RefundNotPossible as exc:
            logger.info("No automatic refund: %s", exc)
    return order_settle(order_id=order_id)


# --- sending ---------------------------------------------------------------------------------


def refund_queue(*, refund_id: int) -> None:
    """Send the refund in the background once the current transaction commits."""
    Refund.objects.filter(pk=refund_id).update(queued_at=timezone.now())
    transaction.on_commit(lambda: refund_publish(refund_id=refund_id))


def refund_publish(*, refund_id: int) -> None:
    """Queue the send task now (call it on commit). A broker outage is logged, not raised: the
    refund is committed and the reconciliation sweep queues it once the broker is back."""
    from kombu.exceptions import OperationalError as BrokerUnavailable

    from orders.tasks import send_refund

    try:
        send_refund.delay(refund_id)
    except BrokerUnavailable:
        logger.exception("Could not queue refund %s; reconciliation will queue it", refund_id)
        Refund.objects.filter(pk=refund_id).update(queued_at=None)


def _worker() -> str:
    from fulfillment.services.common import _worker_id

    return _worker_id()


def _claim(refund_id: int) -> tuple[str | None, Refund | None, str]:
    """Take the refund for this run: ("cancel" | "check" | None, refund, claim token)."""
    token = uuid.uuid4().hex
    now = timezone.now()
    expires = now + timedelta(seconds=settings.REFUND_CLAIM_SECONDS)
    with transaction.atomic():
        refund = Refund.objects.select_for_update().filter(pk=refund_id).first()
        if refund is None:
            return None, None, token
        free = refund.claim_expires_at is None or refund.claim_expires_at < now
        claim = {"claim_token": token, "claim_expires_at": expires, "queued_at": None}
        if refund.state == RefundState.DECIDED:
            refund_transition(
                refund_id=refund_id,
                target=RefundState.SENDING,
                sources=(RefundState.DECIDED,),
                cancel_calls=F("cancel_calls") + 1,
                sent_at=now,
                **claim,
            )
            action = "cancel"
        elif refund.state == RefundState.SENDING and free:
            # A worker died in the middle of a Cancel: it may have gone through. Ask first.
            refund_transition(refund_id=refund_id, target=RefundState.CHECKING, sources=(RefundState.SENDING,), **claim)
            action = "check"
        elif refund.state == RefundState.CHECKING and free:
            Refund.objects.filter(pk=refund_id).update(**claim)
            action = "check"
        else:
            return None, refund, token
    refund.refresh_from_db()
    return action, refund, token


def refund_send(*, refund_id: int) -> str:
    """Send (or check) one refund: Cancel with its ExternalRequestId, GetState after an unknown
    outcome, Cancel again (same id) only when GetState shows it was not made. Safe to run twice
    at once: a claim with an expiry lets one run work on it. Returns the refund's state."""
    action, refund, token = _claim(refund_id)
    if refund is None:
        raise Refund.DoesNotExist(f"Refund {refund_id} does not exist.")
    try:
        client = tbank_client() if action else None
    except TBankError as exc:
        _refuse(refund, token, code="config", message=str(exc))
        action = None
    rounds = 0
    while action and rounds < _MAX_ROUNDS:
        rounds += 1
        action = _cancel(refund, token, client) if action == "cancel" else _check(refund, token, client)
    # Whatever is still unknown waits for the next check; the claim is given back.
    Refund.objects.filter(pk=refund_id, claim_token=token).update(
        claim_token="",
        claim_expires_at=None,
        next_check_at=timezone.now() + timedelta(seconds=settings.REFUND_CHECK_INTERVAL_SECONDS),
    )
    return Refund.objects.values_list("state", flat=True).get(pk=refund_id)


def _cancel_request(refund: Refund) -> dict[str, Any]:
    request: dict[str, Any] = {"PaymentId": refund.payment.payment_id}
    if not refund.full:
        request["Amount"] = refund.amount_kopecks
        if refund.receipt:
            request["Receipt"] = refund.receipt
    request["ExternalRequestId"] = refund.external_request_id
    return request


def _attempt(refund: Refund, *, method: str, request: dict, answer: dict, outcome: str, started, clock, **extra):
    RefundAttempt.objects.create(
        refund=refund,
        method=method,
        request=request,
        answer=answer,
        outcome=outcome,
        error_code=str(extra.get("error_code", ""))[:20],
        message=str(extra.get("message", ""))[:500],
        worker=_worker(),
        started_at=started,
        finished_at=timezone.now(),
        duration_ms=int((time.monotonic() - clock) * 1000),
    )


def _cancel(refund: Refund, token: str, client: TBankClient) -> str | None:
    request = _cancel_request(refund)
    started, clock = timezone.now(), time.monotonic()
    try:
        answer = client.cancel(
            payment_id=refund.payment.payment_id,
            amount=None if refund.full else refund.amount_kopecks,
            receipt=None if refund.full else refund.receipt,
            external_request_id=refund.external_request_id,
        )
    except TBankRefused as exc:
        _attempt(
            refund,
            method="Cancel",
            request=request,
            answer=exc.answer,
            outcome="refused",
            started=started,
            clock=clock,
            error_code=exc.error_code,
            message=str(exc),
        )
        _refuse(refund, token, code=exc.error_code, message=str(exc))
        return None
    except TBankUnavailable as exc:
        _attempt(
            refund, method="Cancel", request=request, answer={}, outcome="unavailable", started=started, clock=clock,
            message=str(exc),
        )  # fmt: skip
        moved = refund_transition(
            refund_id=refund.pk,
            target=RefundState.CHECKING,
            sources=(RefundState.SENDING,),
            claim=token,
            last_message=str(exc)[:500],
        )
        return "check" if moved else None
    except TBankError as exc:  # not configured: nothing was sent
        _attempt(
            refund, method="Cancel", request=request, answer={}, outcome="refused", started=started, clock=clock,
            message=str(exc),
        )  # fmt: skip
        _refuse(refund, token, code="config", message=str(exc))
        return None
    _attempt(
        refund, method="Cancel", request=request, answer=answer.raw, outcome="succeeded", started=started, clock=clock
    )
    refund_mark_succeeded(refund_id=refund.pk, bank_status=answer.status, via="the Cancel answer")
    return None


def _refuse(refund: Refund, token: str, *, code: str, message: str) -> None:
    # Conditional on our claim: a run that lost it must not fail a refund another run resent.
    refund_transition(
        refund_id=refund.pk,
        target=RefundState.FAILED,
        sources=(RefundState.SENDING,),
        claim=token,
        claim_token="",
        claim_expires_at=None,
        last_error_code=(code or "")[:20],
        last_message=message[:500],
    )
    logger.error("Refund %s of order %s refused: %s", refund.pk, refund.order_id, message)


def _check(refund: Refund, token: str, client: TBankClient) -> str | None:
    payment = refund.payment
    request = {"PaymentId": payment.payment_id}
    started, clock = timezone.now(), time.monotonic()
    Refund.objects.filter(pk=refund.pk).update(state_checks=F("state_checks") + 1)
    try:
        state = client.get_state(payment_id=payment.payment_id)
    except TBankError as exc:
        # Refused or unreadable, GetState says nothing about our Cancel: stay CHECKING and ask later.
        _attempt(
            refund,
            method="GetState",
            request=request,
            answer=getattr(exc, "answer", {}),
            outcome="unavailable",
            started=started,
            clock=clock,
            error_code=getattr(exc, "error_code", ""),
            message=str(exc),
        )
        Refund.objects.filter(pk=refund.pk).update(last_message=str(exc)[:500])
        return None
    with transaction.atomic():
        Order.objects.select_for_update().filter(pk=refund.order_id).first()
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        current = Refund.objects.values_list("state", flat=True).get(pk=refund.pk)
        if state.status in FULL_RETURN_STATUSES:
            bank_refunded = payment.amount_kopecks
        elif state.status in PARTIAL_RETURN_STATUSES and state.amount is not None:
            bank_refunded = payment.amount_kopecks - state.amount
        else:
            bank_refunded = 0
        known = payment.refunded_kopecks
        if current != RefundState.CHECKING:
            verdict, detail = "settled", f"already {current}"
        elif state.status in _BUSY_STATUSES:
            verdict, detail = "busy", f"the bank reports {state.status}: wait"
        elif bank_refunded >= known + refund.amount_kopecks:
            verdict, detail = "refunded", f"the bank reports {state.status}, {bank_refunded} kopecks returned"
        elif bank_refunded <= known:
            verdict, detail = "not_refunded", f"the bank reports {state.status}: our Cancel was not made"
        else:
            verdict = "unclear"
            detail = (
                f"the bank reports {state.status} with {bank_refunded} kopecks returned, we know of {known} "
                f"and this refund is {refund.amount_kopecks}: check the payment in the T-Bank portal"
            )
        _attempt(
            refund, method="GetState", request=request, answer=state.raw, outcome=verdict, started=started,
            clock=clock, message=detail,
        )  # fmt: skip
        if verdict == "refunded":
            refund_mark_succeeded(refund_id=refund.pk, bank_status=state.status, via="GetState")
            return None
        if verdict == "not_refunded":
            # Safe to send again, and the same ExternalRequestId makes even a wrong guess harmless.
            moved = refund_transition(
                refund_id=refund.pk,
                target=RefundState.SENDING,
                sources=(RefundState.CHECKING,),
                claim=token,
                cancel_calls=F("cancel_calls") + 1,
                claim_expires_at=timezone.now() + timedelta(seconds=settings.REFUND_CLAIM_SECONDS),
            )
            return "cancel" if moved else None
        Refund.objects.filter(pk=refund.pk).update(last_message=detail[:500], bank_status=state.status[:40])
        return None


def refund_mark_succeeded(*, refund_id: int, bank_status: str = "", via: str = "") -> bool:
    """Record that the bank made refund `refund_id`: the refund SUCCEEDED, the payment's refunded
    total, the units REFUNDED, the order closed if it is done. False when it was already settled
    (whichever of the answer, GetState and the notification comes second changes nothing)."""
    refund = Refund.objects.only("order_id", "payment_id", "amount_kopecks").get(pk=refund_id)
    with transaction.atomic():
        Order.objects.select_for_update().filter(pk=refund.order_id).first()
        Payment.objects.select_for_update().filter(pk=refund.payment_id).first()
        moved = refund_transition(
            refund_id=refund_id,
            target=RefundState.SUCCEEDED,
            sources=IN_FLIGHT,
            claim_token="",
            claim_expires_at=None,
            bank_status=bank_status[:40],
            last_error_code="",
            last_message=f"Refunded ({via})."[:500] if via else "Refunded.",
        )
        if not moved:
            return False
        payment_values: dict[str, Any] = {"refunded_kopecks": F("refunded_kopecks") + refund.amount_kopecks}
        if bank_status:
            payment_values["bank_status"] = bank_status[:40]
        Payment.objects.filter(pk=refund.payment_id).update(**payment_values)
        Delivery.objects.filter(refund_id=refund_id, status=DeliveryStatus.REFUNDING).update(
            status=DeliveryStatus.REFUNDED, last_message=f"Refunded by refund {refund_id}."
        )
        order_settle(order_id=refund.order_id)
        order_id = refund.order_id
        if refund.reason != RefundReason.PORTAL:
            # The outbox row commits with the settlement or not at all (orders.services.emails).
            customer_email_enqueue(order_id=order_id, kind="refund", event=f"refund-{refund_id}")
        transaction.on_commit(
            lambda: signals.refund_settled.send(sender=Refund, refund_id=refund_id, order_id=order_id)
        )
    logger.info("Refund %s of order %s succeeded (%s)", refund_id, refund.order_id, via)
    return True


def refund_resend(*, refund_id: int, user=None) -> Refund:
    """Staff: send a FAILED refund again (after fixing what the bank refused).

    If every Cancel of it was refused, nothing was ever refunded under its ExternalRequestId:
    it gets a new one (the bank might answer a repeat of a refused id with the payment's state,
    as if done) and is sent straight away. If one of them had an unknown outcome, it keeps its
    id and GetState is asked first, so the bank can never make it twice.
    """
    from orders.models import new_external_request_id

    with transaction.atomic():
        refund = Refund.objects.select_for_update().filter(pk=refund_id).first()
        if refund is None:
            raise RefundNotPossible(f"Refund {refund_id} does not exist.")
        if refund.state != RefundState.FAILED:
            raise RefundNotPossible(f"Refund {refund_id} is {refund.state}: only a failed refund is sent again.")
        who = getattr(user, "username", "") or "staff"
        uncertain = refund.attempts.filter(method="Cancel").exclude(outcome="refused").exists()
        if uncertain:
            refund_transition(
                refund_id=refund_id,
                target=RefundState.CHECKING,
                sources=(RefundState.FAILED,),
                next_check_at=None,
                last_message=f"Sent again by {who}: checking with GetState first.",
            )
        else:
            refund_transition(
                refund_id=refund_id,
                target=RefundState.DECIDED,
                sources=(RefundState.FAILED,),
                external_request_id=new_external_request_id(),
                last_message=f"Sent again by {who}.",
            )
        refund_queue(refund_id=refund_id)
    refund.refresh_from_db()
    return refund


# --- the bank's notifications about money returned -------------------------------------------


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


# --- recovery --------------------------------------------------------------------------------


def refunds_reconcile(*, limit: int = 500) -> dict[str, int]:
    """The periodic sweep: decide the refunds a crash left undecided (REFUND_POLICY=auto), close
    orders whose refunds are done, and queue refunds nobody is working on: decided ones whose
    message was lost, ones a dead worker was sending, ones due for a GetState check."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.REFUND_CLAIM_SECONDS)
    open_unit = Delivery.objects.filter(order=OuterRef("pk"), status__in=OPEN_STATUSES)
    unsettled = Delivery.objects.filter(order=OuterRef("pk"), status__in=(DeliveryStatus.FAILED, *REFUND_STATUSES))
    wanted = Q(Exists(unsettled.filter(status=DeliveryStatus.REFUNDED)))
    if settings.REFUND_POLICY == "auto":
        wanted |= Q(Exists(unsettled.filter(status=DeliveryStatus.FAILED, refund__isnull=True)))
    orders = list(
        Order.objects.filter(wanted, status=OrderStatus.PAID)
        .exclude(Exists(open_unit))
        .exclude(Exists(unsettled.filter(status=DeliveryStatus.REFUNDING)))
        .values_list("id", flat=True)[:limit]
    )
    for order_id in orders:
        order_settle_undelivered(order_id=order_id)
    not_claimed = Q(claim_expires_at__isnull=True) | Q(claim_expires_at__lt=now)
    due = (
        Q(state=RefundState.DECIDED) & (Q(queued_at__isnull=True) | Q(queued_at__lt=stale))
        | Q(state=RefundState.SENDING, claim_expires_at__lt=now)
        | Q(state=RefundState.CHECKING)
        & not_claimed
        & (Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
        & (Q(queued_at__isnull=True) | Q(queued_at__lt=stale))
    )
    refund_ids = list(Refund.objects.filter(due).order_by("id").values_list("id", flat=True)[:limit])
    for refund_id in refund_ids:
        Refund.objects.filter(pk=refund_id).update(queued_at=now)
        refund_publish(refund_id=refund_id)
    if orders or refund_ids:
        logger.info("Refund reconciliation: %d order(s) settled, %d refund(s) queued", len(orders), len(refund_ids))
    return {"orders": len(orders), "refunds": len(refund_ids)}
