"""Reactions of the orders app to what the delivery engine and the order services announce, run
inside the transaction that made the change."""

from django.conf import settings
from django.dispatch import receiver

from fulfillment.signals import price_list_applied, unit_delivered_after_refund, units_settled
from orders.models import PriceChangeReason
from orders.services import order_mark_fulfilled, refunds
from orders.services.emails import customer_email_enqueue
from orders.services.pricing import products_activate_priced, products_reprice, products_resume_repriced
from orders.signals import order_fulfilled
from orders.state import IllegalTransition


@receiver(order_fulfilled)
def _email_the_codes(sender, *, order_id: int, **kwargs) -> None:
    # The outbox row commits with FULFILLED or not at all; the task is queued after commit.
    customer_email_enqueue(order_id=order_id, kind="codes")


@receiver(unit_delivered_after_refund)
def _late_delivery(sender, *, delivery_id: int, attempt_id: int | None = None, serial: str = "", **kwargs) -> None:
    refunds.refund_unit_delivered_late(delivery_id=delivery_id, attempt_id=attempt_id, serial=serial)


@receiver(units_settled)
def _close_order(sender, *, order_id: int, all_delivered: bool, **kwargs) -> str:
    """The order's status once its settled units are accounted for."""
    if all_delivered:
        try:
            return order_mark_fulfilled(order_id=order_id).current
        except IllegalTransition as exc:
            return exc.current  # refunded meanwhile: the order keeps that status
    # Through the package, looked up at each call, as the engine used to: the decision can be replaced
    # in one place (a test staging a race does).
    return refunds.order_settle_undelivered(order_id=order_id)


@receiver(price_list_applied)
def _reprice_after_sync(sender, *, report=None, provider: str = "", **kwargs) -> None:
    products_reprice(reason=PriceChangeReason.SYNC)
    if settings.SYNC_AUTO_ACTIVATE and report is not None:
        products_activate_priced(skus=report.created_skus)
    # Repriced: products paused because the supplier refused their price are sold again at the new
    # price, and the units sold before wait for staff (fulfillment.services.routing).
    if provider:
        products_resume_repriced(provider=provider)
