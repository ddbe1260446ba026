"""Celery tasks for refunds: thin wrappers over orders.services.refunds.

The refund's progress is kept in the database (state, claim, next check), not in Celery's
retry counter, so it survives lost messages and dead workers; the periodic sweep queues what
nobody is working on.
"""

import logging

from celery import shared_task
from django.db import DatabaseError

from orders.models import Refund
from orders.services import refunds

logger = logging.getLogger(__name__)


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
