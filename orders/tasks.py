"""Celery tasks of the orders app: thin wrappers over orders.services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError

from orders.services.emails import (
    EmailSendFailed,
    customer_email_send,
    customer_emails_requeue,
    email_retry_delay,
)

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
    from orders.services.polling import payments_poll

    return payments_poll().as_dict()
