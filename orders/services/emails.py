"""Emails to customers through an outbox: recorded with the event, sent by a task after commit.

`customer_email_enqueue` is called inside the transaction that makes the event (an order
becoming FULFILLED): the CustomerEmail row commits with it or not at all, and the send task is
published only after commit. The automatic email of an event is `send_no` 0 and unique per
(order, kind), so however often the event's code runs, it is sent once. Sending claims the row
for a bounded time, so a task delivered twice sends once; an SMTP failure is recorded and
retried with backoff by the task; a periodic sweep re-queues emails whose task was lost.
Nothing here ever changes an order.

A kind of email is an `EmailKind` with its templates and a context function, registered with
`email_kind_register`: "codes" (the order is fulfilled) and "refund" (one per settled refund,
told apart by its `event`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import DatabaseError, transaction
from django.db.models import F, Max, Q
from django.template.loader import render_to_string
from django.utils import timezone, translation

from fulfillment_site.dispatch import task_delay
from orders.models import CustomerEmail, EmailState, Order, Refund, RefundReason
from orders.refund_emails import refund_email_build
from orders.state import OrderStatus
from orders.status import order_status_data, order_status_url

logger = logging.getLogger(__name__)

# How long one worker may hold an email while sending it (longer than an SMTP exchange).
SEND_LEASE_SECONDS = 120


@dataclass(frozen=True)
class EmailKind:
    """One kind of customer email: templates `<template>_subject.txt`, `.txt` and `.html`."""

    name: str
    template: str
    context: Callable[[Order, str], dict[str, Any]]  # (order, event) -> template context


EMAIL_KINDS: dict[str, EmailKind] = {}


def email_kind_register(kind: EmailKind) -> EmailKind:
    EMAIL_KINDS[kind.name] = kind
    return kind


def _codes_context(order: Order, event: str) -> dict[str, Any]:
    """The codes, and for a partly refunded order what was refunded: one email tells both."""
    data = order_status_data(order)
    delivered, refunded = [], []
    for item in data["items"]:
        codes = [unit["code"] for unit in item["units"] if unit["code"]]
        if codes:
            delivered.append({**item, "codes": codes})
        returned = sum(1 for unit in item["units"] if unit["status"] == "refunded")
        if returned:
            refunded.append({**item, "count": returned, "total": returned * item["unit_price"]})
    return {
        "order": data,
        "delivered": delivered,
        "refunded": refunded,
        "codes": [code for item in delivered for code in item["codes"]],
    }


CODES = email_kind_register(EmailKind(name="codes", template="orders/email/codes", context=_codes_context))


def _refund_context(order: Order, event: str) -> dict[str, Any]:
    refund_id = int(event.removeprefix("refund-"))
    email = refund_email_build(refund_id=refund_id)
    if email is None:
        raise ValueError(f"Refund {refund_id} of order {order.pk} is not settled; there is nothing to tell yet.")
    return {"subject": email.subject, "text": email.text}


REFUND = email_kind_register(EmailKind(name="refund", template="orders/email/refund", context=_refund_context))


class EmailSendFailed(Exception):
    def __init__(self, message: str, *, final: bool, attempts: int) -> None:
        self.final = final
        self.attempts = attempts
        super().__init__(message)


def _refund_told_by_codes_email(*, order_id: int, event: str) -> bool:
    """Whether the refund of undelivered units `event` settles an order that ends partly refunded in
    this same transaction: its codes email, not yet sent, says what was delivered and what was
    refunded, so the customer gets one email, not two in the same second that contradict each other."""
    refund_id = event.removeprefix("refund-")
    if (
        not refund_id.isdigit()
        or not Refund.objects.filter(
            pk=int(refund_id), reason__in=(RefundReason.UNDELIVERABLE, RefundReason.STAFF)
        ).exists()
    ):
        return False
    return CustomerEmail.objects.filter(
        order_id=order_id,
        kind=CODES.name,
        send_no=0,
        state=EmailState.PENDING,
        order__status=OrderStatus.PARTIALLY_REFUNDED,
    ).exists()


def customer_email_enqueue(
    *, order_id: int, kind: str, event: str = "", requested_by: str = ""
) -> CustomerEmail | None:
    """Record an email for the customer of `order_id`, sent after the current transaction commits.

    Without `requested_by` it is the event's automatic email (send_no 0): one INSERT that does
    nothing when the row exists, so repeats never send twice; returns None. With it (a staff
    re-send) a new send is recorded and returned. The address is taken from the order at
    sending time.
    """
    if kind not in EMAIL_KINDS:
        raise ValueError(f"Unknown email kind {kind!r}; register it with email_kind_register().")
    now = timezone.now()
    # No savepoint: this runs inside the transaction of the order's status change, and one
    # statement is all the event pays for its email (see the fulfilment query budget).
    with transaction.atomic(savepoint=False):
        if requested_by:
            sends = CustomerEmail.objects.filter(order_id=order_id, kind=kind, event=event)
            last = sends.aggregate(n=Max("send_no"))["n"]
            email = CustomerEmail.objects.create(
                order_id=order_id,
                kind=kind,
                event=event,
                send_no=(last or 0) + 1,
                requested_by=requested_by,
                queued_at=now,
            )
            transaction.on_commit(lambda: customer_email_publish(email_id=email.pk))
            return email
        if kind == REFUND.name and _refund_told_by_codes_email(order_id=order_id, event=event):
            logger.info("Order %s: the codes email tells of %s too; no separate refund email", order_id, event)
            return None
        CustomerEmail.objects.bulk_create(
            [CustomerEmail(order_id=order_id, kind=kind, event=event, send_no=0, queued_at=now)],
            ignore_conflicts=True,
        )
        transaction.on_commit(lambda: _publish_automatic(order_id=order_id, kind=kind, event=event))
    return None


def _publish_automatic(*, order_id: int, kind: str, event: str) -> None:
    email_id = (
        CustomerEmail.objects.filter(order_id=order_id, kind=kind, event=event, send_no=0)
        .values_list("pk", flat=True)
        .first()
    )
    if email_id is not None:
        customer_email_publish(email_id=email_id)


def customer_email_publish(*, email_id: int) -> None:
    """Queue the send task; a broker failure is left to the sweep (the row stays pending)."""
    try:
        task_delay("orders.send_customer_email", email_id)
    except Exception:  # noqa: BLE001 - any broker failure; the sweep queues it again
        logger.exception(
            "Could not queue customer email %s; the sweep will retry",
            email_id,
            extra={"order": customer_email_order_public_id(email_id)},
        )


def customer_email_order_public_id(email_id: int) -> str | None:
    """The public id of the email's order, for log lines (None if unknown or unreadable)."""
    try:
        return CustomerEmail.objects.filter(pk=email_id).values_list("order__public_id", flat=True).first()
    except DatabaseError:
        return None


def customer_email_render(email: CustomerEmail) -> EmailMultiAlternatives:
    order = Order.objects.get(pk=email.order_id)
    kind = EMAIL_KINDS[email.kind]
    language = order.language or settings.LANGUAGE_CODE
    with translation.override(language):
        lang = translation.get_language()[:2]
        context = {**kind.context(order, email.event), "status_url": order_status_url(order, lang=lang)}
        subject = " ".join(render_to_string(f"{kind.template}_subject.txt", context).split())
        text = render_to_string(f"{kind.template}.txt", context)
        html = render_to_string(f"{kind.template}.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[email.to])
    message.attach_alternative(html, "text/html")
    return message


def customer_email_send(*, email_id: int) -> str:
    """Send one outbox email unless it is sent or another worker is sending it.

    Returns "sent", "already_sent", "busy" or "failed" (gave up); raises EmailSendFailed when
    the SMTP server refused and a later attempt should try again.
    """
    now = timezone.now()
    claimed = (
        CustomerEmail.objects.filter(pk=email_id, state=EmailState.PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + timedelta(seconds=SEND_LEASE_SECONDS), attempts=F("attempts") + 1)
    )
    if not claimed:
        state = CustomerEmail.objects.filter(pk=email_id).values_list("state", flat=True).first()
        if state is None:
            logger.warning("Customer email %s does not exist", email_id)
            return "missing"
        return "already_sent" if state == EmailState.SENT else ("failed" if state == EmailState.FAILED else "busy")
    email = CustomerEmail.objects.select_related("order").get(pk=email_id)
    if not email.to:
        email.to = email.order.customer_email
        if not email.to:
            CustomerEmail.objects.filter(pk=email_id).update(
                state=EmailState.FAILED, claimed_until=None, last_error="The order has no email address."
            )
            return "failed"
        CustomerEmail.objects.filter(pk=email_id).update(to=email.to)
    try:
        message = customer_email_render(email)
        message.send(fail_silently=False)
    except Exception as exc:  # noqa: BLE001 - SMTP, socket and template errors alike are recorded
        final = email.attempts >= settings.EMAIL_MAX_ATTEMPTS
        error = f"{type(exc).__name__}: {exc}"[:1000]
        CustomerEmail.objects.filter(pk=email_id).update(
            last_error=error, claimed_until=None, state=EmailState.FAILED if final else EmailState.PENDING
        )
        logger.warning(
            "Customer email %s, attempt %s failed%s: %s",
            email_id,
            email.attempts,
            " (gave up)" * final,
            error,
            extra={"order": email.order.public_id},
        )
        if final:
            return "failed"
        raise EmailSendFailed(error, final=False, attempts=email.attempts) from exc
    CustomerEmail.objects.filter(pk=email_id).update(
        state=EmailState.SENT, sent_at=timezone.now(), claimed_until=None, last_error=""
    )
    logger.info(
        "Customer email %s (%s, order %s) sent to the customer",
        email_id,
        email.kind,
        email.order_id,
        extra={"order": email.order.public_id},
    )
    return "sent"


def customer_emails_requeue(*, limit: int = 200) -> list[int]:
    """Periodic: queue again pending emails whose task was queued long ago and nobody holds."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.EMAIL_STALE_AFTER_SECONDS)
    ids = list(
        CustomerEmail.objects.filter(state=EmailState.PENDING)
        .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=stale))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if ids:
        CustomerEmail.objects.filter(pk__in=ids).update(queued_at=now)
        for email_id in ids:
            customer_email_publish(email_id=email_id)
    return ids


def email_retry_delay(attempts: int) -> int:
    """Seconds before the next attempt: doubling from EMAIL_RETRY_BASE_SECONDS, at most an hour."""
    return int(min(settings.EMAIL_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), 3600))
