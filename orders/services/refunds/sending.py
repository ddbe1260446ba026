"""Sending refunds to T-Bank: claim, Cancel with the refund's ExternalRequestId, GetState after
an unknown outcome, settlement, and staff re-sends."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from fulfillment.services import units_mark_refunded
from fulfillment_site.dispatch import task_delay
from fulfillment_site.logs import order_logging
from fulfillment_site.workers import worker_id
from orders import signals
from orders.models import Order, Payment, Refund, RefundAttempt, RefundReason, new_external_request_id
from orders.refund_state import IN_FLIGHT, RefundState, refund_transition
from orders.services.emails import customer_email_enqueue
from orders.services.refunds.closing import order_settle
from orders.services.refunds.common import (
    _BUSY_STATUSES,
    _MAX_ROUNDS,
    FULL_RETURN_STATUSES,
    PARTIAL_RETURN_STATUSES,
    RefundNotPossible,
)
from orders.services.refunds.ledger import holds_place_q, ledger_flag, order_blocked, payment_ledger
from orders.services.refunds.portal import portal_refund_apply
from orders.tbank.client import TBankClient, TBankError, TBankRefused, TBankUnavailable, tbank_client

logger = logging.getLogger(__name__)


def refund_queue(*, refund_id: int) -> None:
    """Send the refund in the background once the current transaction commits."""
    Refund.objects.filter(pk=refund_id).update(queued_at=timezone.now())
    transaction.on_commit(lambda: refund_publish(refund_id=refund_id))


def refund_publish(*, refund_id: int) -> None:
    """Queue the send task now (call it on commit). A broker outage is logged, not raised: the
    refund is committed and the reconciliation sweep queues it once the broker is back."""
    try:
        task_delay("orders.send_refund", refund_id)
    except BrokerUnavailable:
        logger.exception(
            "Could not queue refund %s; reconciliation will queue it",
            refund_id,
            extra={"order": refund_order_public_id(refund_id)},
        )
        Refund.objects.filter(pk=refund_id).update(queued_at=None)


def _claim(refund_id: int) -> tuple[str | None, Refund | None, str]:
    """Take the refund for this run: ("cancel" | "check" | None, refund, claim token)."""
    token = uuid.uuid4().hex
    now = timezone.now()
    expires = now + timedelta(seconds=settings.REFUND_CLAIM_SECONDS)
    with transaction.atomic():
        refund = Refund.objects.select_for_update(no_key=True).filter(pk=refund_id).first()
        if refund is None:
            return None, None, token
        free = refund.claim_expires_at is None or refund.claim_expires_at < now
        claim = {"claim_token": token, "claim_expires_at": expires, "queued_at": None}
        if refund.state == RefundState.DECIDED:
            if not _may_send(refund):
                Refund.objects.filter(pk=refund_id).update(queued_at=None)
                return None, refund, token
            try:
                # "Cancel started" is committed before the call leaves: a worker killed mid-call
                # leaves a refund that may be at the bank, and it keeps its ExternalRequestId.
                with transaction.atomic():
                    refund_transition(
                        refund_id=refund_id,
                        target=RefundState.SENDING,
                        sources=(RefundState.DECIDED,),
                        cancel_calls=F("cancel_calls") + 1,
                        cancel_may_be_at_bank=True,
                        sent_at=now,
                        **claim,
                    )
            except IntegrityError:
                # Another refund of this payment is in flight: this one waits its turn and is
                # sent when that one settles (or by the sweep).
                Refund.objects.filter(pk=refund_id).update(
                    queued_at=None, last_message="Waiting for another refund of this payment to settle."
                )
                return None, refund, token
            action = "cancel"
        elif refund.state == RefundState.SENDING and free:
            # A worker died in the middle of a Cancel: it may have gone through. Ask first.
            refund_transition(refund_id=refund_id, target=RefundState.CHECKING, sources=(RefundState.SENDING,), **claim)
            action = "check"
        elif refund.state == RefundState.CHECKING and free:
            Refund.objects.filter(pk=refund_id).update(**claim)
            action = "check"
        elif refund.state == RefundState.FAILED and refund.cancel_may_be_at_bank and free:
            # Refused, but an earlier Cancel of it may have been made: only asked about, never sent.
            Refund.objects.filter(pk=refund_id).update(**claim)
            action = "verify"
        else:
            return None, refund, token
    refund.refresh_from_db()
    return action, refund, token


def _may_send(refund: Refund) -> bool:
    """Whether a DECIDED refund may be sent now: its order is not stopped for staff, and the
    payment's ledger has room for it (otherwise the order is flagged)."""
    if order_blocked(order_id=refund.order_id):
        Refund.objects.filter(pk=refund.pk).update(last_message="Held: the order is flagged for staff.")
        return False
    payment = Payment.objects.get(pk=refund.payment_id)
    ledger = payment_ledger(payment=payment)
    if ledger.allows(refund.amount_kopecks):
        return True
    reason = (
        f"Refund {refund.pk} of {refund.amount_kopecks / 100:.2f} RUB was not sent: PaymentId {payment.payment_id} "
        f"paid {ledger.paid / 100:.2f} RUB, of which {ledger.delivered / 100:.2f} delivered, "
        f"{ledger.delivering / 100:.2f} being delivered, {ledger.refunded / 100:.2f} refunded and "
        f"{ledger.refunding / 100:.2f} being refunded. Check the payment in the T-Bank portal, then resolve "
        "this flag to let the refund go, or refund by hand."
    )
    ledger_flag(order_id=refund.order_id, reason=reason)
    Refund.objects.filter(pk=refund.pk).update(last_message=reason[:500])
    return False


def refund_send_next(*, payment_id: int) -> int | None:
    """Queue the oldest refund of the payment waiting its turn, if none holds the place."""
    if Refund.objects.filter(holds_place_q(), payment_id=payment_id).exists():
        return None
    next_id = (
        Refund.objects.filter(payment_id=payment_id, state=RefundState.DECIDED)
        .order_by("id")
        .values_list("pk", flat=True)
        .first()
    )
    if next_id is not None:
        refund_queue(refund_id=next_id)
    return next_id


def refund_send(*, refund_id: int) -> str:
    """Send (or check) one refund: Cancel with its ExternalRequestId, GetState after an unknown
    outcome, Cancel again (same id) only when GetState shows it was not made. Safe to run twice
    at once: a claim with an expiry lets one run work on it. Returns the refund's state."""
    with order_logging(refund_order_public_id(refund_id)):
        return _refund_send(refund_id=refund_id)


def refund_order_public_id(refund_id: int) -> str | None:
    """The public id of the refund's order, for its log lines (None if unknown or unreadable)."""
    try:
        return Refund.objects.filter(pk=refund_id).values_list("order__public_id", flat=True).first()
    except DatabaseError:
        return None  # the send itself will meet (and report) the same problem


def _refund_send(*, refund_id: int) -> str:
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
        if action == "verify":
            action = _verify(refund, token, client)
        else:
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
        worker=worker_id(),
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
    if answer.new_amount is not None:
        payment = refund.payment
        _bank_total_observed(
            payment_id=payment.pk, bank_refunded=payment.amount_kopecks - answer.new_amount, status=answer.status
        )
    return None


def _bank_total_observed(*, payment_id: int, bank_refunded: int, status: str) -> None:
    """The bank's refunded total of a payment, seen in a Cancel answer or GetState: what none of
    our refunds explains (none may be in flight) was refunded in the portal, and is recorded."""
    with transaction.atomic():
        payment = Payment.objects.select_related("order").get(pk=payment_id)
        Order.objects.select_for_update(no_key=True).filter(pk=payment.order_id).first()
        payment = Payment.objects.select_for_update(no_key=True).get(pk=payment_id)
        unexplained = bank_refunded - payment.refunded_kopecks
        if unexplained <= 0 or Refund.objects.filter(holds_place_q(), payment=payment).exists():
            return
        portal_refund_apply(order=payment.order, payment=payment, amount=unexplained, status=status)


def _refuse(refund: Refund, token: str, *, code: str, message: str) -> None:
    # This call did nothing at the bank. Earlier ones whose answer was not a refusal may have:
    # then the refund keeps its place (and its ExternalRequestId) until staff settle it.
    counts = Refund.objects.values("cancel_calls", "cancel_refusals").get(pk=refund.pk)
    uncertain = counts["cancel_calls"] > counts["cancel_refusals"] + 1
    # Conditional on our claim: a run that lost it must not fail a refund another run resent.
    moved = refund_transition(
        refund_id=refund.pk,
        target=RefundState.FAILED,
        sources=(RefundState.SENDING,),
        claim=token,
        claim_token="",
        claim_expires_at=None,
        cancel_refusals=F("cancel_refusals") + 1,
        cancel_may_be_at_bank=uncertain,
        last_error_code=(code or "")[:20],
        last_message=message[:500],
    )
    logger.error("Refund %s of order %s refused: %s", refund.pk, refund.order_id, message)
    if moved and not uncertain:
        refund_send_next(payment_id=refund.payment_id)


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
        Order.objects.select_for_update(no_key=True).filter(pk=refund.order_id).first()
        payment = Payment.objects.select_for_update(no_key=True).get(pk=payment.pk)
        current = Refund.objects.values_list("state", flat=True).get(pk=refund.pk)
        bank_refunded = _bank_refunded(payment, state.status, state.amount)
        known = payment.refunded_kopecks
        new = bank_refunded - known
        if current != RefundState.CHECKING:
            verdict, detail = "settled", f"already {current}"
        elif state.status in _BUSY_STATUSES:
            verdict, detail = "busy", f"the bank reports {state.status}: wait"
        elif new == refund.amount_kopecks:
            # The only refund of this payment the bank may be making explains the change exactly.
            verdict, detail = "refunded", f"the bank reports {state.status}, {bank_refunded} kopecks returned"
        elif new <= 0:
            verdict, detail = "not_refunded", f"the bank reports {state.status}: our Cancel was not made"
        else:
            # The change is not this refund's amount: money went back outside the service too.
            # Only the Cancel's own answer (same ExternalRequestId: made at most once) tells.
            verdict = "unclear"
            detail = (
                f"the bank reports {state.status} with {bank_refunded} kopecks returned, we know of {known} "
                f"and this refund is {refund.amount_kopecks}: asking again with the same ExternalRequestId"
            )
        _attempt(
            refund, method="GetState", request=request, answer=state.raw, outcome=verdict, started=started,
            clock=clock, message=detail,
        )  # fmt: skip
        if verdict == "refunded":
            refund_mark_succeeded(refund_id=refund.pk, bank_status=state.status, via="GetState")
            return None
        if verdict == "settled":
            _bank_total_observed(payment_id=payment.pk, bank_refunded=bank_refunded, status=state.status)
        if verdict in ("not_refunded", "unclear"):
            # Safe to send again, and the same ExternalRequestId makes even a wrong guess harmless.
            moved = refund_transition(
                refund_id=refund.pk,
                target=RefundState.SENDING,
                sources=(RefundState.CHECKING,),
                claim=token,
                cancel_calls=F("cancel_calls") + 1,
                cancel_may_be_at_bank=True,
                claim_expires_at=timezone.now() + timedelta(seconds=settings.REFUND_CLAIM_SECONDS),
            )
            return "cancel" if moved else None
        Refund.objects.filter(pk=refund.pk).update(last_message=detail[:500], bank_status=state.status[:40])
        return None


def _bank_refunded(payment: Payment, status: str, amount: int | None) -> int:
    """What the bank's answer says was returned of `payment` in all, in kopecks."""
    if status in FULL_RETURN_STATUSES:
        return payment.amount_kopecks
    if status in PARTIAL_RETURN_STATUSES and amount is not None:
        return payment.amount_kopecks - amount
    return 0


def _verify(refund: Refund, token: str, client: TBankClient) -> None:
    """Ask GetState about a FAILED refund whose earlier Cancel may have reached the bank: when the
    bank's total moved by exactly its amount, it was made (it holds the payment's one place, so
    nothing else of ours explains the change) and is recorded SUCCEEDED. Otherwise it stays
    FAILED with its place and its ExternalRequestId, and is asked about again later. Never a Cancel."""
    payment = refund.payment
    request = {"PaymentId": payment.payment_id}
    started, clock = timezone.now(), time.monotonic()
    Refund.objects.filter(pk=refund.pk).update(state_checks=F("state_checks") + 1)
    later = {
        "claim_token": "",
        "claim_expires_at": None,
        "next_check_at": timezone.now() + timedelta(seconds=settings.REFUND_FAILED_RECHECK_SECONDS),
    }
    try:
        state = client.get_state(payment_id=payment.payment_id)
    except TBankError as exc:
        _attempt(
            refund, method="GetState", request=request, answer=getattr(exc, "answer", {}), outcome="unavailable",
            started=started, clock=clock, error_code=getattr(exc, "error_code", ""), message=str(exc),
        )  # fmt: skip
        Refund.objects.filter(pk=refund.pk, claim_token=token).update(**later)
        return None
    with transaction.atomic():
        Order.objects.select_for_update(no_key=True).filter(pk=refund.order_id).first()
        payment = Payment.objects.select_for_update(no_key=True).get(pk=payment.pk)
        new = _bank_refunded(payment, state.status, state.amount) - payment.refunded_kopecks
        made = new == refund.amount_kopecks and state.status not in _BUSY_STATUSES
        detail = f"re-check of a refused refund: the bank reports {state.status}, " + (
            "this refund was made" if made else f"{max(new, 0)} kopecks returned that we do not know of"
        )
        _attempt(
            refund, method="GetState", request=request, answer=state.raw, started=started, clock=clock,
            outcome="refunded" if made else "not_refunded", message=detail,
        )  # fmt: skip
        Refund.objects.filter(pk=refund.pk, claim_token=token).update(**later)
        if made:
            refund_mark_succeeded(refund_id=refund.pk, bank_status=state.status, via="GetState, re-checking a refusal")
    return None


def refund_mark_succeeded(*, refund_id: int, bank_status: str = "", via: str = "") -> bool:
    """Record that the bank made refund `refund_id`: the refund SUCCEEDED, the payment's refunded
    total, the units REFUNDED, the order closed if it is done. False when it was already settled
    (whichever of the answer, GetState and the notification comes second changes nothing)."""
    refund = Refund.objects.only("order_id", "payment_id", "amount_kopecks").get(pk=refund_id)
    with transaction.atomic():
        Order.objects.select_for_update(no_key=True).filter(pk=refund.order_id).first()
        Payment.objects.select_for_update(no_key=True).filter(pk=refund.payment_id).first()
        moved = refund_transition(
            refund_id=refund_id,
            target=RefundState.SUCCEEDED,
            sources=(*IN_FLIGHT, RefundState.FAILED),
            where=~Q(state=RefundState.FAILED) | Q(cancel_may_be_at_bank=True),
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
        units_mark_refunded(refund_ids=[refund_id], refund_id=refund_id, message=f"Refunded by refund {refund_id}.")
        order_settle(order_id=refund.order_id)
        refund_send_next(payment_id=refund.payment_id)
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

    If every Cancel started for it was refused, nothing was ever refunded under its
    ExternalRequestId: it gets a new one (the bank might answer a repeat of a refused id with the
    payment's state, as if done) and waits its turn to be sent. If any Cancel may have reached the
    bank (answered otherwise, or not at all: a worker killed mid-call), it keeps its id for good
    and GetState is asked first, so the bank can never make it twice.
    """
    with transaction.atomic():
        refund = Refund.objects.select_for_update(no_key=True).filter(pk=refund_id).first()
        if refund is None:
            raise RefundNotPossible(f"Refund {refund_id} does not exist.")
        if refund.state != RefundState.FAILED:
            raise RefundNotPossible(f"Refund {refund_id} is {refund.state}: only a failed refund is sent again.")
        who = getattr(user, "username", "") or "staff"
        # Judged from the Cancels *started* (counted before each call), not from the answers
        # recorded after: a call cut short by a dead worker left no answer, and may have been made.
        uncertain = refund.cancel_may_be_at_bank or refund.cancel_calls > refund.cancel_refusals
        if (
            uncertain
            and Refund.objects.filter(holds_place_q(), payment_id=refund.payment_id).exclude(pk=refund_id).exists()
        ):
            raise RefundNotPossible(
                f"Refund {refund_id}: another refund of PaymentId {refund.payment.payment_id} is being made; send "
                "this one again once it has settled."
            )
        if uncertain:
            refund_transition(
                refund_id=refund_id,
                target=RefundState.CHECKING,
                sources=(RefundState.FAILED,),
                next_check_at=None,
                cancel_may_be_at_bank=True,
                last_message=f"Sent again by {who}: checking with GetState first (same ExternalRequestId).",
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
