"""The periodic sweep: decide, send and check the refunds nobody is working on."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from fulfillment.selectors import settled_with_refund_work
from orders.models import Order, Refund
from orders.refund_state import RefundState
from orders.services.refunds.decisions import order_settle_undelivered
from orders.services.refunds.sending import refund_publish
from orders.state import OrderStatus

logger = logging.getLogger(__name__)


def refunds_reconcile(*, limit: int = 500) -> dict[str, int]:
    """The periodic sweep: decide the refunds a crash left undecided (REFUND_POLICY=auto), close
    orders whose refunds are done, and queue refunds nobody is working on: decided ones whose
    message was lost, ones a dead worker was sending, ones due for a GetState check, and refused
    ones whose earlier Cancel may have been made (asked about with GetState, never re-sent)."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.REFUND_CLAIM_SECONDS)
    wanted = settled_with_refund_work(failed_uncovered=settings.REFUND_POLICY == "auto")
    orders = list(Order.objects.filter(wanted, status=OrderStatus.PAID).values_list("id", flat=True)[:limit])
    for order_id in orders:
        order_settle_undelivered(order_id=order_id)
    not_claimed = Q(claim_expires_at__isnull=True) | Q(claim_expires_at__lt=now)
    due = (
        Q(state=RefundState.DECIDED) & (Q(queued_at__isnull=True) | Q(queued_at__lt=stale))
        # SENDING and nobody holds it: a dead worker's claim ran out, or a run gave its claim back
        # with its rounds used up just as it was about to Cancel again.
        | Q(state=RefundState.SENDING) & not_claimed
        | Q(state__in=(RefundState.CHECKING, RefundState.FAILED))
        & ~Q(state=RefundState.FAILED, cancel_may_be_at_bank=False)
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
