"""A unit delivered after all, after its refund was decided or made (a late provider success)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus, FlagKind
from orders.models import Order, Refund
from orders.refund_state import RefundState, refund_transition

logger = logging.getLogger(__name__)


def refund_unit_delivered_late(*, delivery_id: int, serial: str = "", attempt_id: int | None = None) -> str:
    """The provider reports delivered a unit whose refund is decided or made.

    A refund decided but not sent yet is withdrawn: the unit is recorded as delivered, the
    refund's other units go back to FAILED (to be decided again), nothing reaches the bank.
    Otherwise the money is (or may be) on its way back: the delivery is recorded on the unit and
    the order is flagged "goods and money both given" (dashboard and staff alert). Returns
    "withdrawn" or "flagged".
    """
    from fulfillment.services import order_flag_raise
    from orders.services.refunds.decisions import order_settle_undelivered

    unit = Delivery.objects.only("order_id").get(pk=delivery_id)
    order_id = unit.order_id
    with transaction.atomic():
        Order.objects.select_for_update().filter(pk=order_id).first()
        unit = Delivery.objects.select_for_update().get(pk=delivery_id)
        refund = Refund.objects.select_for_update().filter(pk=unit.refund_id).first() if unit.refund_id else None
        now = timezone.now()
        if (
            refund is not None
            and unit.status == DeliveryStatus.REFUNDING
            and refund_transition(
                refund_id=refund.pk,
                target=RefundState.WITHDRAWN,
                sources=(RefundState.DECIDED,),
                last_message=f"Withdrawn before sending: unit {unit.unit_key} was delivered after all.",
            )
        ):
            Delivery.objects.filter(pk=unit.pk).update(
                status=DeliveryStatus.DELIVERED,
                serial=serial[:255],
                delivered_at=now,
                refund=None,
                failure_scope="",
                last_message=f"Delivered after all (late provider success); refund {refund.pk} withdrawn.",
            )
            Delivery.objects.filter(refund=refund, status=DeliveryStatus.REFUNDING).update(
                status=DeliveryStatus.FAILED,
                refund=None,
                last_message=f"Refund {refund.pk} was withdrawn (another unit of it was delivered): decided again.",
            )
            outcome = "withdrawn"
        else:
            what = f"refund {refund.pk} ({refund.get_state_display().lower()})" if refund else "a refund"
            Delivery.objects.filter(pk=unit.pk).update(
                serial=serial[:255] or unit.serial,
                last_message=f"Delivered by the provider after {what} (serial {serial or 'none'})."[:500],
            )
            order_flag_raise(
                order_id=order_id,
                kind=FlagKind.GOODS_AND_MONEY,
                delivery_id=unit.pk,
                attempt_id=attempt_id,
                reason=(
                    f"Unit {unit.unit_key} ({unit.item.product.name} for {unit.item.recipient}) was delivered by the "
                    f"provider (serial {serial or 'none'}) after {what}: the customer has the goods and the money. "
                    "Ask the customer to pay for the unit, or write the loss off, then resolve this flag."
                ),
            )
            logger.error("Order %s: unit %s delivered after %s: goods and money both given", order_id, unit.pk, what)
            outcome = "flagged"
    if outcome == "withdrawn":
        order_settle_undelivered(order_id=order_id)
    return outcome
