"""Retention of the payment audit log: which old PaymentNotification rows may be deleted.

Deleted once older than the cutoff (`manage.py purge_audit`):

* every request that failed authentication (`authenticated` false: a source outside
  TBANK_ALLOWED_NETWORKS, a body that is not a notification, a bad Token or TerminalKey).
  Those never changed anything and are only summaries;
* an authenticated notification that changed nothing (verdict recorded, duplicate or ignored)
  about a status that moves no money (not CONFIRMED, REFUNDED, REVERSED, PARTIAL_*), once its
  order is final (fulfilled, refunded or cancelled).

Kept for ever, because a money question may need them: every notification that changed an
order (applied), one flagged for staff (needs review), an amount mismatch, an unknown OrderId
(money the shop cannot place), a signed notification that was refused as malformed, every
authenticated CONFIRMED / REFUNDED / REVERSED / PARTIAL_* (the late-CONFIRMED-after-refund
rule reads them), and everything about an order that is still NEW or PAID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q, QuerySet

from orders import tbank
from orders.models import NotificationVerdict, PaymentNotification
from orders.state import OrderStatus

#: Statuses after which the shop itself will not change the order again.
FINAL_ORDER_STATUSES = (OrderStatus.FULFILLED, OrderStatus.REFUNDED, OrderStatus.CANCELLED)
#: Bank statuses that say money moved (or came back).
MONEY_BANK_STATUSES = frozenset({tbank.CONFIRMED}) | tbank.MONEY_RETURNED_STATUSES | tbank.PARTIAL_STATUSES
_CHANGED_NOTHING = (NotificationVerdict.RECORDED, NotificationVerdict.DUPLICATE, NotificationVerdict.IGNORED)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class PurgeResult:
    """What a purge of one table did (or, in a dry run, would do)."""

    deleted: int  # rows deleted (dry run: rows that would be)
    kept: int  # rows older than the cutoff that are kept


def payment_notifications_purgeable(*, before: datetime) -> QuerySet[PaymentNotification]:
    """Notifications received before `before` that no money question needs (module docstring)."""
    rejected = Q(authenticated=False)
    changed_nothing = Q(authenticated=True, verdict__in=_CHANGED_NOTHING, order__status__in=FINAL_ORDER_STATUSES) & ~Q(
        bank_status__in=MONEY_BANK_STATUSES
    )
    return PaymentNotification.objects.filter(Q(received_at__lt=before) & (rejected | changed_nothing))


def payment_notifications_purge(
    *, before: datetime, dry_run: bool = False, batch_size: int = 1000, progress: Progress | None = None
) -> PurgeResult:
    """Delete the purgeable notifications received before `before`, in batches."""
    return purge_in_batches(
        payment_notifications_purgeable(before=before),
        older=PaymentNotification.objects.filter(received_at__lt=before),
        dry_run=dry_run,
        batch_size=batch_size,
        progress=progress,
    )


def purge_in_batches(
    purgeable: QuerySet, *, older: QuerySet, dry_run: bool, batch_size: int, progress: Progress | None
) -> PurgeResult:
    """Delete `purgeable` in batches of `batch_size` (each its own short transaction, so a long
    purge never holds locks the webhook or the workers wait on); `older` is every row older than
    the cutoff, to report what is kept."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    if dry_run:
        deleted = purgeable.count()
        return PurgeResult(deleted=deleted, kept=older.count() - deleted)
    deleted = 0
    while True:
        ids = list(purgeable.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            # The conditions are applied again: a row that stopped being purgeable meanwhile stays.
            count, _ = purgeable.filter(pk__in=ids).delete()
        deleted += count
        if progress:
            progress(deleted)
    return PurgeResult(deleted=deleted, kept=older.count())
