"""The periodic sweep that finds paid orders whose due units nobody is working on."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from fulfillment.models import (
    Delivery,
    DeliveryStatus,
    FlagKind,
    OrderFlag,
    ProviderHalt,
)
from fulfillment.services.common import (
    _WORKABLE,
    _complete_if_delivered,
)
from fulfillment.services.flags import order_flag_raise
from fulfillment.services.halts import deliveries_resume_after_faults
from fulfillment.services.queueing import deliveries_create, order_fulfillment_queue
from fulfillment_site.logs import order_log_extra
from orders.models import Order
from orders.state import OrderStatus

logger = logging.getLogger(__name__)

#: How far back the sweep looks for the leftovers of a crash at payment or refund time. Both
#: happen within seconds of the event (units are created in the paying transaction, and a refund
#: cancels unsent units in its own), and the sweep runs every few seconds, so a day is ample; a
#: paid order that still slipped through shows on the staff dashboard as paid for too long.
REPAIR_WINDOW = timedelta(days=1)


def paid_orders_reconcile(*, limit: int = 1000) -> list[int]:
    """Queue every PAID order (or REFUNDED one with a unit in flight) with a unit that is due and
    not already queued recently.

    Covers lost messages, crashed workers (expired claims), retries whose backoff has passed
    and pending outcomes whose callback never came.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.FULFILLMENT_STALE_AFTER_SECONDS)
    due = Q(status__in=(DeliveryStatus.WAITING, DeliveryStatus.PENDING), next_attempt_at__lte=now) | Q(
        status=DeliveryStatus.SENDING, claim_expires_at__lt=now
    )
    not_claimed = Q(claim_expires_at__isnull=True) | Q(claim_expires_at__lt=now)
    # A message queued before the unit fell due found it not due (queueing stamps every open
    # unit of the order), so it does not count: without this the unit would wait for `stale`.
    not_queued = (
        Q(queued_at__isnull=True)
        | Q(queued_at__lt=stale)
        | Q(status__in=(DeliveryStatus.WAITING, DeliveryStatus.PENDING), queued_at__lt=F("next_attempt_at"))
        | Q(status=DeliveryStatus.SENDING, queued_at__lt=F("claim_expires_at"))
    )
    halted = list(ProviderHalt.objects.values_list("provider", flat=True))
    candidates = Delivery.objects.filter(_WORKABLE, due, not_claimed, not_queued)
    if halted:
        # Units released through a deposit halt (services.funding) go on.
        candidates = candidates.exclude(provider__in=halted, released_at__isnull=True)
    order_ids = list(candidates.order_by("order_id").values_list("order_id", flat=True).distinct()[:limit])
    # Orders paid but without units (payment committed, creation lost) are repaired too. One that
    # has nothing to deliver (no item with a unit) is flagged for staff, once, and left alone:
    # queueing it again every sweep would never change anything.
    missing = list(
        Order.objects.filter(status=OrderStatus.PAID, paid_at__lt=stale, paid_at__gte=now - REPAIR_WINDOW)
        .exclude(Exists(Delivery.objects.filter(order=OuterRef("pk"))))
        .exclude(Exists(OrderFlag.objects.filter(order=OuterRef("pk"), kind=FlagKind.NOTHING_TO_DELIVER)))
        .order_by()  # see _paid_orders_all_delivered
        .values_list("id", flat=True)[:limit]
    )
    for order_id in sorted(set(missing)):
        if not deliveries_create(order_id=order_id):
            order_flag_raise(
                order_id=order_id,
                kind=FlagKind.NOTHING_TO_DELIVER,
                reason=(
                    f"Order {order_id} is paid but has no unit to deliver (no item, or items of quantity 0). "
                    "Nothing will be sent: refund the payment in the T-Bank portal."
                ),
            )
            missing.remove(order_id)
    order_ids = sorted(set(order_ids) | set(missing))
    for order_id in order_ids:
        with transaction.atomic():
            order_fulfillment_queue(order_id=order_id)
    if order_ids:
        logger.info("Reconciliation queued %d paid order(s): %s", len(order_ids), order_ids[:20])
    # A unit that failed back to WAITING just as its order was refunded would wait for ever.
    Delivery.objects.filter(
        status=DeliveryStatus.WAITING,
        order__status=OrderStatus.REFUNDED,
        order__refunded_at__gte=now - REPAIR_WINDOW,
    ).update(status=DeliveryStatus.CANCELLED, last_message="Order refunded before this unit was sent.")
    # Units failed by a product or shop fault (before such faults were handled by scope, or after
    # staff deleted a halt) are sent again once no halt or pause covers them.
    deliveries_resume_after_faults(limit=limit)
    # A worker that died between recording the last unit's delivery and marking the order
    # fulfilled leaves a PAID order with nothing due, which nothing above would ever look at.
    for order_id in _paid_orders_all_delivered(limit=limit):
        status = _complete_if_delivered(order_id)
        logger.warning(
            "Reconciliation found order %s paid with every unit delivered; it is now %s",
            order_id,
            status,
            extra=order_log_extra(order_id),
        )
    return order_ids


def _paid_orders_all_delivered(*, limit: int) -> list[int]:
    """PAID orders with units, all delivered: rare (a crash between the last unit and the order).

    Unordered on purpose. Order's Meta.ordering (-id) with a LIMIT let PostgreSQL walk the primary
    key backwards through every order, hoping to meet matches early; they are rare, so it read
    them all (470 ms for 200,000 orders, 2% paid). Without ORDER BY it starts from the PAID rows
    (the status index) and probes the (order, status) index of deliveries for each: 21 ms.
    """
    unfinished = Delivery.objects.filter(
        order=OuterRef("pk"), status__in=[status for status in DeliveryStatus if status != DeliveryStatus.DELIVERED]
    )
    return list(
        Order.objects.filter(status=OrderStatus.PAID)
        .filter(Exists(Delivery.objects.filter(order=OuterRef("pk"))))
        .exclude(Exists(unfinished))
        .order_by()
        .values_list("id", flat=True)[:limit]
    )
