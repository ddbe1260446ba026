"""Creating an order's delivery units and queueing background delivery runs for them."""

import logging

from django.db import transaction
from django.utils import timezone

from fulfillment.models import (
    OPEN_STATUSES,
    Delivery,
    DeliveryStatus,
)
from fulfillment.services.common import (
    new_reference,
)
from fulfillment_site.logs import order_log_extra
from orders.models import OrderItem

logger = logging.getLogger(__name__)


def deliveries_create(*, order_id: int) -> int:
    """Create the Delivery rows (one per unit) of an order being paid. Idempotent."""
    now = timezone.now()
    items = OrderItem.objects.filter(order_id=order_id).values_list("id", "quantity")
    rows = [
        Delivery(
            order_id=order_id,
            item_id=item_id,
            unit_index=index,
            unit_key=f"{order_id}-{item_id}-{index}",
            reference=new_reference(),
            next_attempt_at=now,
            queued_at=now,
        )
        for item_id, quantity in items
        for index in range(quantity)
    ]
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def order_fulfillment_queue(*, order_id: int) -> None:
    """Queue a background delivery run for the order once the current transaction commits."""
    Delivery.objects.filter(order_id=order_id, status__in=OPEN_STATUSES).update(queued_at=timezone.now())
    transaction.on_commit(lambda: order_fulfillment_publish(order_id=order_id))


def order_fulfillment_publish(*, order_id: int) -> None:
    """Send the delivery task now (call it on commit). A broker outage is logged, not raised:
    what had to be written is committed, and reconciliation queues the units once it is back."""
    from kombu.exceptions import OperationalError as BrokerUnavailable

    from fulfillment.tasks import deliver_order

    try:
        deliver_order.delay(order_id)
    except BrokerUnavailable:
        logger.exception(
            "Could not queue the delivery of order %s; reconciliation will queue it",
            order_id,
            extra=order_log_extra(order_id),
        )
        # Not queued after all: the next sweep must not wait for the stale window.
        Delivery.objects.filter(order_id=order_id, status__in=OPEN_STATUSES).update(queued_at=None)


def deliveries_cancel_unsent(*, order_id: int) -> int:
    """Refund: units not yet sent are never sent. Units already sent resolve as they will."""
    return Delivery.objects.filter(order_id=order_id, status=DeliveryStatus.WAITING).update(
        status=DeliveryStatus.CANCELLED,
        last_message="Order refunded before this unit was sent.",
        claim_token="",
        claim_expires_at=None,
    )
