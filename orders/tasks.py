"""Celery tasks of the orders app: thin wrappers over orders.services (customer emails, payment
polling, refunds).

Progress is kept in the database (outbox rows, refund state, claims), not in Celery's retry
counters, so it survives lost messages and dead workers; periodic sweeps queue what nobody
is working on.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError

from fulfillment_site.logs import bind_order
from orders.models import Refund
from orders.services import pricing, refunds
from orders.services.emails import (
    EmailSendFailed,
    customer_email_order_public_id,
    customer_email_send,
    customer_emails_requeue,
    email_retry_delay,
)
from orders.services.polling import payments_poll

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name="orders.send_customer_email",
    acks_late=True,
    max_retries=None,  # bounded by EMAIL_MAX_ATTEMPTS, counted in the database
    autoretry_for=(DatabaseError,),
    retry_backoff=5,
    retry_backoff_max=300,
)
def send_customer_email(self, email_id: int) -> str:
    """Send one outbox email; an SMTP failure comes back after a growing delay."""
    bind_order(customer_email_order_public_id(email_id))  # Celery's lines about the task too
    try:
        return customer_email_send(email_id=email_id)
    except EmailSendFailed as exc:
        raise self.retry(countdown=email_retry_delay(exc.attempts), exc=exc) from exc


@shared_task(name="orders.requeue_customer_emails", acks_late=True, ignore_result=True)
def requeue_customer_emails() -> list[int]:
    """Periodic: re-queue outbox emails whose task message was lost."""
    return customer_emails_requeue()


@shared_task(name="orders.poll_payments", acks_late=True, ignore_result=True)
def poll_payments() -> dict:
    """Periodic: ask GetState about NEW orders whose payment never notified us."""
    return payments_poll().as_dict()


@shared_task(
    name="orders.send_refund",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def send_refund(refund_id: int) -> dict:
    """Send or check one refund. Safe to run twice at once: the refund is claimed."""
    bind_order(refunds.refund_order_public_id(refund_id))  # Celery's lines about the task too
    try:
        state = refunds.refund_send(refund_id=refund_id)
    except Refund.DoesNotExist as exc:
        logger.info("Nothing to send: %s", exc)
        return {"refund_id": refund_id, "skipped": str(exc)}
    return {"refund_id": refund_id, "state": state}


@shared_task(name="orders.reconcile_refunds", acks_late=True, ignore_result=True)
def reconcile_refunds() -> dict:
    """Periodic: decide, send and check the refunds nobody is working on."""
    return refunds.refunds_reconcile()


@shared_task(name="orders.refresh_exchange_rate", acks_late=True, ignore_result=True)
def refresh_exchange_rate() -> str:
    """Periodic: fetch the Central Bank's rupiah rate; a new one reprices the catalogue."""
    try:
        rate, report = pricing.exchange_rate_refresh()
    except pricing.RateUnavailable as exc:
        logger.warning("Exchange rate not refreshed: %s", exc)
        return str(exc)
    return f"{rate}: {report.summary()}" if rate else report.summary()
