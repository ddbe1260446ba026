"""A unit delivered after all, after its refund was decided or made (a late provider success)."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus, FlagKind
from fulfillment.services import (
    order_flag_raise,
    unit_delivered_despite_refund,
    unit_note_late_delivery,
    units_release_from_refund,
)
from orders.models import Order, Refund
from orders.refund_state import RefundState, refund_transition
from orders.services.refunds.decisions import order_settle_undelivered

logger = logging.getLogger(__name__)


def refund_unit_delivered_late(*, delivery_id: int, serial: str = "", attempt_id: int | None = None) -> str:
    """The provider reports delivered a unit whose refund is decided or made.

    A refund decided but not sent yet is withdrawn: the unit is recorded as delivered, the
    refund's other units go back to FAILED (to be decided again), nothing reaches the bank.
    Otherwise the money is (or may be) on its way back: the delivery is recorded on the unit and
    the order is flagged "goods and money both given" (dashboard and staff alert). Returns
    "withdrawn" or "flagged".
    """
    unit = Delivery.objects.only("order_id").get(pk=delivery_id)
    order_id = unit.order_id
    with transaction.atomic():
        Order.objects.select_for_update(no_key=True).filter(pk=order_id).first()
        unit = Delivery.objects.select_for_update(no_key=True).get(pk=delivery_id)
        refund = (
            Refund.objects.select_for_update(no_key=True).filter(pk=unit.refund_id).first() if unit.refund_id else None
        )
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
            unit_delivered_despite_refund(
                unit_id=unit.pk,
                serial=serial,
                at=now,
                message=f"Delivered after all (late provider success); refund {refund.pk} withdrawn.",
            )
            units_release_from_refund(
                refund_id=refund.pk,
                message=f"Refund {refund.pk} was withdrawn (another unit of it was delivered): decided again.",
            )
            outcome = "withdrawn"
        else:
            what = f"refund {refund.pk} ({refund.get_state_display().lower()})" if refund else "a refund"
            unit_note_late_delivery(
                unit_id=unit.pk,
                serial=serial,
                message=f"Delivered by the provider after {what} (serial {serial or 'none'}).",
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
