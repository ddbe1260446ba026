"""GetState polling: payments whose notification never reached us still settle their order.

A NEW order's payment that is older than PAYMENT_POLL_AFTER_SECONDS is asked about with
GetState, at most once per PAYMENT_POLL_EVERY_SECONDS, PAYMENT_POLL_BATCH payments per run.
What the bank answers goes through `payment_status_apply`, the one path of the webhook, with
source POLLING in the audit record: CONFIRMED pays the order, a failed or expired payment
cancels it. A payment past its RedirectDueDate is not cancelled on our clock: the bank's
answer decides. The HTTP call is made with no transaction open and no lock held; the order's
row is locked only to apply the answer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from fulfillment_site.logs import order_logging
from orders.models import NotificationSource, Order, Payment
from orders.services.notifications import payment_status_apply
from orders.state import OrderStatus
from orders.tbank.client import TBankError, tbank_client

logger = logging.getLogger(__name__)

# Answers worth an audit record: they change the order. Others (NEW, FORM_SHOWED...) only
# update the Payment row, or every poll of a waiting payment would add a record.
ACTIONABLE = frozenset(
    {
        "CONFIRMED",
        "REJECTED",
        "CANCELED",
        "DEADLINE_EXPIRED",
        "ATTEMPTS_EXPIRED",
        "AUTH_FAIL",
        "REVERSED",
        "REFUNDED",
        # Captured, then partly refunded: a NEW order whose CONFIRMED was lost is paid by it.
        "PARTIAL_REFUNDED",
    }
)


@dataclass
class PollReport:
    asked: int = 0
    applied: list[str] = field(default_factory=list)
    errors: int = 0

    def as_dict(self) -> dict:
        return {"asked": self.asked, "applied": self.applied, "errors": self.errors}


def payments_due_for_poll(*, now=None, limit: int | None = None) -> list[int]:
    now = now or timezone.now()
    older_than = now - timedelta(seconds=settings.PAYMENT_POLL_AFTER_SECONDS)
    polled_before = now - timedelta(seconds=settings.PAYMENT_POLL_EVERY_SECONDS)
    # Only an order's newest payment: older ones were replaced (a payment left by an unanswered
    # Init is cancelled by us before the next Init), and their CANCELED must not cancel the order.
    newest = Payment.objects.filter(order=OuterRef("order")).order_by("-id").values("id")[:1]
    return list(
        Payment.objects.filter(order__status=OrderStatus.NEW, created_at__lt=older_than, pk=Subquery(newest))
        .filter(Q(last_polled_at__isnull=True) | Q(last_polled_at__lt=polled_before))
        .order_by(F("last_polled_at").asc(nulls_first=True), "id")
        .values_list("id", flat=True)[: limit or settings.PAYMENT_POLL_BATCH]
    )


def payments_poll(*, limit: int | None = None) -> PollReport:
    """Ask GetState about the payments due (see the module docstring); returns what was done."""
    report = PollReport()
    client = None
    for payment_pk in payments_due_for_poll(limit=limit):
        now = timezone.now()
        polled_before = now - timedelta(seconds=settings.PAYMENT_POLL_EVERY_SECONDS)
        # Claim the payment for this run: two pollers running at once ask the bank once.
        claimed = (
            Payment.objects.filter(pk=payment_pk)
            .filter(Q(last_polled_at__isnull=True) | Q(last_polled_at__lt=polled_before))
            .update(last_polled_at=now)
        )
        if not claimed:
            continue
        payment = Payment.objects.select_related("order").get(pk=payment_pk)
        if client is None:
            try:
                client = tbank_client()
            except TBankError as exc:
                logger.error("Payment polling skipped: %s", exc)
                report.errors += 1
                return report
        report.asked += 1
        if payment_state_poll(payment=payment, client=client):
            report.applied.append(payment.payment_id)
    return report


def payment_state_poll(*, payment: Payment, client) -> bool:
    """Ask GetState about one payment and apply the answer; True when the order was settled."""
    with order_logging(payment.order.public_id, pk=payment.order_id):
        return _payment_state_poll(payment=payment, client=client)


def _payment_state_poll(*, payment: Payment, client) -> bool:
    try:
        state = client.get_state(payment_id=payment.payment_id)
    except TBankError as exc:
        logger.warning("GetState of PaymentId %s (order %s) failed: %s", payment.payment_id, payment.order_id, exc)
        return False
    order = payment.order
    if state.order_id and state.order_id != order.public_id:
        logger.error(
            "GetState of PaymentId %s names OrderId %s, not order %s: not applied",
            payment.payment_id,
            state.order_id,
            order.public_id,
        )
        return False
    if state.status != payment.bank_status:
        Payment.objects.filter(pk=payment.pk).update(bank_status=state.status, updated_at=timezone.now())
    if state.status not in ACTIONABLE:
        return False
    payload = {
        "TerminalKey": settings.TBANK_TERMINAL_KEY,
        "OrderId": order.public_id,
        "Success": state.status not in ("REJECTED", "AUTH_FAIL"),
        "Status": state.status,
        "PaymentId": payment.payment_id,
        "Amount": state.amount,
    }
    if payload["Amount"] is None:
        payload.pop("Amount")
        if state.status == "CONFIRMED":
            logger.error("GetState of PaymentId %s: CONFIRMED without Amount; not applied", payment.payment_id)
            return False
    with transaction.atomic():
        locked = Order.objects.select_for_update(no_key=True).get(pk=order.pk)
        outcome = payment_status_apply(
            order=locked,
            payload=payload,
            body=json.dumps(state.raw, ensure_ascii=False).encode(),
            source=NotificationSource.POLLING,
        )
    logger.info(
        "Polling PaymentId %s of order %s: %s (%s)", payment.payment_id, order.pk, state.status, outcome.verdict
    )
    return outcome.http_status == 200
