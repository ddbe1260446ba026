"""Retention of the delivery audit log: which old DeliveryAttempt rows may be deleted.

Deleted once older than the cutoff (`manage.py purge_audit`): the status checks and callbacks
that only answered "still pending", of a unit that is settled (delivered, or cancelled before
it was sent) on an order that is final (fulfilled, refunded or cancelled). A unit pending for
days is checked every few minutes; those rows say nothing once the unit is settled.

Kept for ever, because a money question may need them: every purchase (each one may have been
charged), every answer that settled or failed a unit (delivered, failed), every attempt of a
unit that is still open (waiting, sending, pending) or failed (staff decide on a retry from
them), and every attempt of an order that is still PAID.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from fulfillment.models import AttemptKind, DeliveryAttempt, DeliveryStatus
from fulfillment.providers.base import Outcome
from fulfillment_site.batches import Progress, PurgeResult, purge_in_batches
from orders.statuses import SETTLED_STATUSES

SETTLED_UNIT_STATUSES = (DeliveryStatus.DELIVERED, DeliveryStatus.CANCELLED)


def delivery_attempts_purgeable(*, before: datetime) -> QuerySet[DeliveryAttempt]:
    """Attempts finished before `before` that no money question needs (module docstring)."""
    return DeliveryAttempt.objects.filter(
        finished_at__lt=before,
        kind__in=(AttemptKind.CHECK, AttemptKind.CALLBACK),
        outcome=Outcome.PENDING,
        delivery__status__in=SETTLED_UNIT_STATUSES,
        order__status__in=SETTLED_STATUSES,
    )


def delivery_attempts_purge(
    *, before: datetime, dry_run: bool = False, batch_size: int = 1000, progress: Progress | None = None
) -> PurgeResult:
    """Delete the purgeable attempts finished before `before`, in batches."""
    return purge_in_batches(
        delivery_attempts_purgeable(before=before),
        older=DeliveryAttempt.objects.filter(finished_at__lt=before),
        dry_run=dry_run,
        batch_size=batch_size,
        progress=progress,
    )
