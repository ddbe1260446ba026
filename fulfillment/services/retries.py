"""Staff and operator retries: make an order's undelivered units due again, safely."""

import logging
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from fulfillment.models import (
    OPEN_STATUSES,
    Delivery,
    DeliveryStatus,
)
from fulfillment.registry import get_provider_class
from fulfillment.selectors import unit_may_have_been_delivered
from fulfillment.services.common import (
    OrderNotFound,
    OrderNotFulfillable,
    _complete_if_delivered,
    new_reference,
)
from fulfillment.services.queueing import deliveries_create, order_fulfillment_queue
from orders.models import Order
from orders.state import OrderStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryDecision:
    order_id: int
    queued: bool
    reason: str = ""
    held_unknown: int = 0  # FAILED units left alone because they may have been delivered

    @property
    def held_reason(self) -> str:
        if not self.held_unknown:
            return ""
        return (
            f"{self.held_unknown} unit(s) of order {self.order_id} may have been delivered (unknown outcome, or a "
            "provider answer that needs checking) and were not retried: ask the provider, then retry them with "
            f"`manage.py fulfill_order {self.order_id} --rebuy-unknown`."
        )


def order_fulfillment_reset_for_retry(*, order_id: int, rebuy_unknown: bool = False) -> RetryDecision:
    """Make every undelivered unit of a PAID order due now; FAILED units get a new reference.

    A FAILED unit whose outcome is unknown (UNKNOWN_OUTCOME_CODE) may have been delivered, so
    it is only bought again with `rebuy_unknown=True`, after a person checked with the provider.
    Does not run or queue anything: callers choose (admin queues, the command runs inline).
    """
    with transaction.atomic():
        order = Order.objects.select_for_update(no_key=True).filter(pk=order_id).first()
        if order is None:
            raise OrderNotFound(order_id)
        if order.status != OrderStatus.PAID:
            raise OrderNotFulfillable(order_id, order.status)
        deliveries_create(order_id=order_id)
        now = timezone.now()
        failed = list(Delivery.objects.filter(order_id=order_id, status=DeliveryStatus.FAILED))
        held = [] if rebuy_unknown else [delivery for delivery in failed if unit_may_have_been_delivered(delivery)]
        held_unknown = len(held)
        # Safe: these references got a final failure answer, so nothing was bought under them.
        for delivery in failed:
            if delivery in held:
                continue
            Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.FAILED).update(
                status=DeliveryStatus.WAITING,
                reference=new_reference(),
                purchase_no=F("purchase_no") + 1,
                purchase_attempts=0,
                reference_sent_at=None,
                failure_scope="",
                next_attempt_at=now,
            )
        Delivery.objects.filter(order_id=order_id, status=DeliveryStatus.WAITING).update(next_attempt_at=now)
        # A pending purchase is re-checked (same reference) as soon as its provider allows; the
        # last check was before now, so now + min_check_interval never asks too early.
        pending = Delivery.objects.filter(order_id=order_id, status=DeliveryStatus.PENDING)
        for name in set(pending.values_list("provider", flat=True)):
            try:
                soonest = now + get_provider_class(name).min_check_interval
            except ImproperlyConfigured:
                continue  # an unregistered provider: the delivery run reports it
            pending.filter(provider=name, next_attempt_at__gt=soonest).update(next_attempt_at=soonest)
        open_units = Delivery.objects.filter(order_id=order_id, status__in=OPEN_STATUSES).count()
    if not open_units:
        if not Delivery.objects.filter(order_id=order_id).exists():
            return RetryDecision(
                order_id, queued=False, reason="the order has nothing to deliver (no units): refund it instead"
            )
        if held_unknown:
            return RetryDecision(
                order_id, queued=False, reason="only units with an unknown outcome remain", held_unknown=held_unknown
            )
        _complete_if_delivered(order_id)
        if Delivery.objects.filter(order_id=order_id, refund__isnull=False).exists():
            return RetryDecision(order_id, queued=False, reason="every unit is delivered or refunded")
        return RetryDecision(order_id, queued=False, reason="every unit is already delivered")
    return RetryDecision(order_id, queued=True, held_unknown=held_unknown)


def order_fulfillment_retry(*, order_id: int) -> RetryDecision:
    """Staff retry: reset failed units and queue a background run. Raises for a non-PAID order."""
    decision = order_fulfillment_reset_for_retry(order_id=order_id)
    if decision.queued:
        with transaction.atomic():
            order_fulfillment_queue(order_id=order_id)
    return decision
