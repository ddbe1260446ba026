"""The customer's word for a unit: waiting, in progress, delivered, failed, refunding, refunded.

Derived from the unit's delivery status in this one place, for the status page, its JSON, the
codes email and the refund books alike.
"""

from __future__ import annotations

from fulfillment.models import DeliveryStatus

UNIT_WAITING = "waiting"
UNIT_IN_PROGRESS = "in_progress"
UNIT_DELIVERED = "delivered"
UNIT_FAILED = "failed"
UNIT_REFUNDING = "refunding"
UNIT_REFUNDED = "refunded"
UNIT_STATUSES = (UNIT_WAITING, UNIT_IN_PROGRESS, UNIT_DELIVERED, UNIT_FAILED, UNIT_REFUNDING, UNIT_REFUNDED)

_UNIT_STATUS = {
    DeliveryStatus.WAITING: UNIT_WAITING,
    DeliveryStatus.SENDING: UNIT_IN_PROGRESS,
    DeliveryStatus.PENDING: UNIT_IN_PROGRESS,
    DeliveryStatus.DELIVERED: UNIT_DELIVERED,
    DeliveryStatus.FAILED: UNIT_FAILED,
    # Refunding until the bank has made the refund (also while a refused refund waits for staff:
    # never "refunded" before the money went back).
    DeliveryStatus.REFUNDING: UNIT_REFUNDING,
    DeliveryStatus.REFUNDED: UNIT_REFUNDED,
    # Only an order refunded as a whole has cancelled units: their money went back with it.
    DeliveryStatus.CANCELLED: UNIT_REFUNDED,
}


def unit_status(delivery_status: str | None) -> str:
    """The customer's word for a unit's delivery status (no Delivery yet: waiting)."""
    if delivery_status is None:
        return UNIT_WAITING
    try:
        return _UNIT_STATUS[delivery_status]
    except KeyError:
        known = ", ".join(DeliveryStatus.values)
        raise ValueError(f"{delivery_status!r} is not a delivery status; use one of {known}.") from None
