"""Celery tasks: thin wrappers over fulfillment.services.

Backoff between delivery attempts is kept per unit in the database (next_attempt_at), not in
Celery's retry counter, so it survives lost messages and dead workers; the periodic
reconciliation task queues whatever is due. Celery's own retry is used only for
infrastructure errors (database unreachable), with exponential backoff, jitter and a bound.
"""

import logging

from celery import shared_task
from django.db import DatabaseError

from fulfillment import catalog, services
from fulfillment.providers.digiflazz import DigiflazzError
from fulfillment_site.logs import bind_order

logger = logging.getLogger(__name__)


@shared_task(
    name="fulfillment.deliver_order",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def deliver_order(order_id: int) -> dict:
    """Deliver what is due for one order. Safe to run twice at once: units are claimed."""
    try:
        report = services.fulfill_order(order_id)
    except (services.OrderNotFound, services.OrderNotFulfillable) as exc:
        bind_order(getattr(exc, "public_id", None))
        logger.info("Nothing to deliver: %s", exc)
        return {"order_id": order_id, "skipped": str(exc)}
    # Celery's own line about the finished task is about this order too.
    bind_order(report.order_public_id, pk=order_id)
    return {
        "order_id": order_id,
        "delivered": report.units_delivered,
        "total": report.units_total,
        "status": report.order_status,
    }


@shared_task(name="fulfillment.reconcile_paid_orders", acks_late=True, ignore_result=True)
def reconcile_paid_orders() -> list[int]:
    """Periodic: queue PAID orders whose due units nobody is working on."""
    return services.paid_orders_reconcile()


@shared_task(name="fulfillment.check_provider_accounts", acks_late=True, ignore_result=True)
def check_provider_accounts() -> None:
    """Periodic: refresh the providers' account balances and lift halts whose fault is gone."""
    services.provider_accounts_check()


@shared_task(name="fulfillment.sync_price_list", acks_late=True, ignore_result=True)
def sync_price_list() -> str:
    """Periodic: pull Digiflazz's price list; stock, cut-off windows and prices follow, and the
    products are repriced. Too soon after another pull, or refused: logged, tried at the next beat."""
    try:
        report = catalog.products_sync_price_list()
    except catalog.PriceListTooSoon as exc:
        logger.info("Price list not pulled: %s", exc)
        return str(exc)
    except DigiflazzError as exc:
        logger.warning("Price list sync failed: %s", exc)
        return str(exc)
    return report.summary()
