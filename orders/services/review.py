"""Staff review of payment notifications that a person must look at (a second payment, a partial refund)."""

from __future__ import annotations

from django.utils import timezone

from orders.models import NotificationVerdict, PaymentNotification


class NotificationNotReviewable(Exception):
    """The notification does not need review, or was already reviewed."""


def payment_notification_mark_reviewed(*, notification_id: int, user_id: int | None) -> PaymentNotification:
    """Record that staff settled a notification marked *needs review*; it leaves the problem list.

    Raises NotificationNotReviewable for a notification that does not need review or was
    already reviewed (by whom and when is in the message), and PaymentNotification.DoesNotExist
    for an unknown id.
    """
    now = timezone.now()
    updated = PaymentNotification.objects.filter(
        pk=notification_id, verdict=NotificationVerdict.NEEDS_REVIEW, reviewed_at__isnull=True
    ).update(reviewed_at=now, reviewed_by_id=user_id)
    record = PaymentNotification.objects.select_related("reviewed_by").get(pk=notification_id)
    if not updated:
        if record.verdict != NotificationVerdict.NEEDS_REVIEW:
            raise NotificationNotReviewable(
                f"Notification {notification_id} is {record.get_verdict_display()}; only notifications that "
                "need staff review are marked reviewed."
            )
        who = record.reviewed_by.get_username() if record.reviewed_by else "someone"
        raise NotificationNotReviewable(
            f"Notification {notification_id} was already reviewed by {who} at "
            f"{timezone.localtime(record.reviewed_at):%Y-%m-%d %H:%M:%S}."
        )
    return record
