"""The units' side of a refund: the engine moves its units into and out of REFUNDING and REFUNDED
when the money side (orders.services.refunds) has decided.

The money side decides which units a refund covers and when the bank made it; these functions
make the unit rows say so. Each is one conditional UPDATE that names the statuses it moves from
and returns how many units it moved, so the caller, inside its own transaction, can tell a unit
that a worker or a staff retry took meanwhile (and roll back) from one it has. None of them sends
or buys anything.
"""

from __future__ import annotations

from datetime import datetime

from fulfillment.models import Delivery, DeliveryStatus

_RELEASE_CLAIM = {"claim_token": "", "claim_expires_at": None, "next_attempt_at": None}


def units_take_for_refund(*, unit_ids: list[int], refund_id: int, message: str) -> int:
    """FAILED units no refund covers -> REFUNDING under refund `refund_id` (a decided refund)."""
    return Delivery.objects.filter(pk__in=unit_ids, status=DeliveryStatus.FAILED, refund__isnull=True).update(
        status=DeliveryStatus.REFUNDING, refund_id=refund_id, last_message=message[:500], **_RELEASE_CLAIM
    )


def units_refund_unsent(*, unit_ids: list[int], refund_id: int, message: str) -> int:
    """WAITING or FAILED units no refund covers -> REFUNDED by refund `refund_id` (a refund the bank
    already made, in its portal): never bought afterwards. A unit sent meanwhile is not moved."""
    return Delivery.objects.filter(
        pk__in=unit_ids, refund__isnull=True, status__in=(DeliveryStatus.WAITING, DeliveryStatus.FAILED)
    ).update(status=DeliveryStatus.REFUNDED, refund_id=refund_id, last_message=message[:500], **_RELEASE_CLAIM)


def units_mark_refunded(*, refund_ids: list[int], refund_id: int, message: str) -> int:
    """The REFUNDING units of `refund_ids` -> REFUNDED, covered by refund `refund_id` (the same
    refund once the bank made it, or a portal refund that returned their money instead)."""
    return Delivery.objects.filter(refund_id__in=refund_ids, status=DeliveryStatus.REFUNDING).update(
        status=DeliveryStatus.REFUNDED, refund_id=refund_id, last_message=message[:500]
    )


def units_release_from_refund(*, refund_id: int, message: str) -> int:
    """The REFUNDING units of a withdrawn refund -> FAILED, uncovered: to be decided again."""
    return Delivery.objects.filter(refund_id=refund_id, status=DeliveryStatus.REFUNDING).update(
        status=DeliveryStatus.FAILED, refund=None, last_message=message[:500]
    )


def units_cover_by_full_refund(*, order_id: int, refund_id: int, message: str) -> int:
    """Every unit of the order no refund covers is covered by refund `refund_id` (the whole payment
    returned): FAILED units become REFUNDED; the others keep their status (units in flight resolve
    as they will; WAITING ones are cancelled with the order). Returns the units covered."""
    uncovered = Delivery.objects.filter(order_id=order_id, refund__isnull=True)
    covered = uncovered.exclude(status=DeliveryStatus.FAILED).update(refund_id=refund_id)
    covered += uncovered.filter(status=DeliveryStatus.FAILED).update(
        refund_id=refund_id, status=DeliveryStatus.REFUNDED, last_message=message[:500]
    )
    return covered


def units_note_refund(*, refund_id: int, message: str) -> int:
    """Write `message` on every unit refund `refund_id` covers (what staff read on the unit)."""
    return Delivery.objects.filter(refund_id=refund_id).update(last_message=message[:500])


def unit_delivered_despite_refund(*, unit_id: int, serial: str, at: datetime, message: str) -> int:
    """A REFUNDING unit whose refund was withdrawn before sending -> DELIVERED (the provider
    delivered it after all), no longer covered by the refund."""
    return Delivery.objects.filter(pk=unit_id, status=DeliveryStatus.REFUNDING).update(
        status=DeliveryStatus.DELIVERED,
        serial=serial[:255],
        delivered_at=at,
        refund=None,
        failure_scope="",
        last_message=message[:500],
    )


def unit_note_late_delivery(*, unit_id: int, serial: str, message: str) -> int:
    """Record on a refunded (or refunding) unit that the provider delivered it after all; its status
    stays, since the money is or may be on its way back (the order is flagged by the caller)."""
    values = {"last_message": message[:500]}
    if serial:
        values["serial"] = serial[:255]
    return Delivery.objects.filter(pk=unit_id).update(**values)
