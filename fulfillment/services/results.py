"""Recording provider answers (calls and callbacks) and moving units by them."""

import logging
from datetime import datetime, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from fulfillment.models import (
    AttemptKind,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
)
from fulfillment.providers.base import (
    FailureScope,
    FulfillmentResult,
    Outcome,
)
from fulfillment.registry import get_provider_class
from fulfillment.services.common import (
    _PENDING_BACKOFF_BASE,
    UnitReport,
    _backoff,
    _complete_if_delivered,
    _max_attempts,
    _worker_id,
    new_reference,
)
from fulfillment.services.halts import provider_halt
from fulfillment.services.queueing import order_fulfillment_queue
from orders.models import Order
from orders.state import OrderStatus

logger = logging.getLogger(__name__)


def delivery_record_result(
    *,
    unit: Delivery,
    result: FulfillmentResult,
    kind: str,
    provider_name: str,
    claim_token: str | None,
    started_at: datetime,
    duration_ms: int,
    check_interval: timedelta = timedelta(0),
) -> UnitReport:
    """Store a provider's answer as a DeliveryAttempt and move the unit accordingly.

    `claim_token=None` is a callback: it may settle a SENDING or PENDING unit whoever holds it.
    A DELIVERED unit never changes again.
    """
    now = timezone.now()
    # Tied to the reference: an answer about an earlier purchase must never settle a later one.
    open_now = Q(pk=unit.pk, reference=unit.reference, status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING))
    mine = open_now & (Q(claim_token=claim_token) if claim_token is not None else Q())
    release = {"claim_token": "", "claim_expires_at": None}
    common = {"last_code": result.code[:50], "last_message": result.message[:500]}

    if result.outcome == Outcome.DELIVERED:
        # A delivery is a fact: record it even if our claim has lapsed.
        condition = open_now
        values = {
            "status": DeliveryStatus.DELIVERED,
            "serial": result.serial[:255],
            "delivered_at": now,
            "failure_scope": "",
        }
    elif result.outcome == Outcome.PENDING:
        checked = 1 if kind == AttemptKind.CHECK else 0
        wait = max(check_interval, _backoff(unit.status_checks + checked + 1, base=_PENDING_BACKOFF_BASE))
        condition = mine
        values = {
            "status": DeliveryStatus.PENDING,
            "next_attempt_at": now + wait,
            "status_checks": F("status_checks") + checked,
        }
    elif result.failure_scope == FailureScope.CONFIGURATION:
        provider_halt(provider=provider_name, code=result.code, reason=result.message)
        condition = mine
        if kind == AttemptKind.PURCHASE:
            # The request was refused, so nothing was bought: the next purchase gets a new reference.
            values = _fresh_purchase(now=now, delay=timedelta(0), failure_scope=result.failure_scope)
        else:
            # A refused *check* says nothing about the purchase, which may still go through:
            # keep its reference and check again once the halt is lifted.
            values = {"status": DeliveryStatus.PENDING, "next_attempt_at": now + check_interval}
    elif result.failure_scope == FailureScope.RETRYABLE and unit.purchase_attempts < _max_attempts():
        condition = mine
        delay = max(_backoff(unit.purchase_attempts), timedelta(seconds=result.retry_after or 0))
        values = _fresh_purchase(now=now, delay=delay, failure_scope=result.failure_scope)
    else:
        condition = mine
        values = {"status": DeliveryStatus.FAILED, "failure_scope": result.failure_scope or FailureScope.PERMANENT}
    if (
        values["status"] == DeliveryStatus.WAITING
        and Order.objects.filter(pk=unit.order_id, status=OrderStatus.REFUNDED).exists()
    ):
        # Refunded while this purchase was out: it failed, and nothing new may be sent.
        values = {"status": DeliveryStatus.CANCELLED, "failure_scope": result.failure_scope or ""}

    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery_id=unit.pk,
            order_id=unit.order_id,
            provider=provider_name,
            reference=unit.reference,
            kind=kind,
            outcome=result.outcome,
            failure_scope=result.failure_scope or "",
            code=result.code[:50],
            message=result.message[:500],
            serial=result.serial[:255],
            raw=result.raw,
            worker=_worker_id(),
            started_at=started_at,
            finished_at=now,
            duration_ms=duration_ms,
        )
        applied = Delivery.objects.filter(condition).update(**values, **common, **release)
    if not applied:
        logger.info("Result for %s not applied: the unit moved on meanwhile", unit.reference)
    return UnitReport(
        delivery_id=unit.pk,
        unit_key=unit.unit_key,
        reference=unit.reference,
        kind=kind,
        outcome=result.outcome,
        code=result.code,
        message=result.message,
        serial=result.serial,
        failure_scope=result.failure_scope or "",
    )


def _fresh_purchase(*, now: datetime, delay: timedelta, failure_scope: str) -> dict:
    # The old reference got a final failure answer, so a new one cannot double-buy.
    return {
        "status": DeliveryStatus.WAITING,
        "reference": new_reference(),
        "purchase_no": F("purchase_no") + 1,
        "reference_sent_at": None,
        "status_checks": 0,
        "failure_scope": failure_scope,
        "next_attempt_at": now + delay,
    }


# --- callbacks -------------------------------------------------------------------------------


def delivery_resolve_by_reference(*, reference: str, result: FulfillmentResult, provider_name: str) -> bool:
    """Apply a provider's callback for `reference`. False when the reference is unknown or the
    unit is already settled (duplicates change nothing)."""
    if result.outcome == Outcome.PENDING:
        return False
    unit = Delivery.objects.filter(
        reference=reference, provider=provider_name, status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING)
    ).first()
    if unit is None:
        return False
    delivery_record_result(
        unit=unit,
        result=result,
        kind=AttemptKind.CALLBACK,
        provider_name=provider_name,
        claim_token=None,
        started_at=timezone.now(),
        duration_ms=0,
    )
    settled = Delivery.objects.filter(pk=unit.pk).exclude(status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING))
    if settled.exists():
        _complete_if_delivered(unit.order_id)
        return True
    return False


def delivery_check_soon(*, reference: str, provider_name: str) -> bool:
    """An unverified hint that `reference` changed: check it with the provider soon, trusting
    nothing the hint said. A forged hint costs one status check, never a wrong delivery state.
    False when no open unit holds that reference."""
    unit = Delivery.objects.filter(
        reference=reference, provider=provider_name, status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING)
    ).first()
    if unit is None:
        return False
    try:
        interval = get_provider_class(provider_name).min_check_interval
    except ImproperlyConfigured:
        return False
    # Never sooner than the provider allows after the last check (which happened before now).
    soonest = timezone.now() + interval
    with transaction.atomic():
        Delivery.objects.filter(
            pk=unit.pk, reference=reference, status=DeliveryStatus.PENDING, next_attempt_at__gt=soonest
        ).update(next_attempt_at=soonest)
        order_fulfillment_queue(order_id=unit.order_id)
    return True
