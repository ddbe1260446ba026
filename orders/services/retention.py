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

from datetime import datetime

from django.db.models import Q, QuerySet

from fulfillment_site.batches import Progress, PurgeResult, purge_in_batches
from orders import tbank
from orders.models import NotificationVerdict, PaymentNotification
from orders.statuses import SETTLED_STATUSES

#: Statuses after which the shop itself will not change the order again.
FINAL_ORDER_STATUSES = SETTLED_STATUSES
#: Bank statuses that say money moved (or came back).
MONEY_BANK_STATUSES = frozenset({tbank.CONFIRMED}) | tbank.MONEY_RETURNED_STATUSES | tbank.PARTIAL_STATUSES
_CHANGED_NOTHING = (NotificationVerdict.RECORDED, NotificationVerdict.DUPLICATE, NotificationVerdict.IGNORED)


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
