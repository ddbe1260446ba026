"""The bank's notifications about money returned: our own refunds recognised, and what none of
them explains recorded as a refund made in the bank's portal (orders.services.refunds.portal)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from orders.models import Order, Payment, Refund, RefundAttempt
from orders.refund_state import RefundState
from orders.services.refunds.common import FULL_RETURN_STATUSES
from orders.services.refunds.ledger import holds_place_q
from orders.services.refunds.portal import portal_refund_record
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
    payment = Payment.objects.select_for_update(no_key=True).get(pk=payment.pk)
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
