"""Recording provider answers (calls and callbacks) and moving units by them."""

import logging
from datetime import datetime, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from fulfillment.models import (
    AttemptKind,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    FlagKind,
    PauseKind,
)
from fulfillment.providers.base import (
    NOT_THE_UNITS_SCOPES,
    PRODUCT_SCOPES,
    SHOP_WIDE_SCOPES,
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
    new_reference,
)
from fulfillment.services.flags import order_flag_raise
from fulfillment.services.halts import fault_hold_until, product_pause, provider_halt
from fulfillment.services.queueing import order_fulfillment_queue
from fulfillment.signals import unit_delivered_after_refund
from fulfillment_site.logs import bind_order, order_log_extra
from fulfillment_site.workers import worker_id
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
    probe: bool = False,
) -> UnitReport:
    """Store a provider's answer as a DeliveryAttempt and move the unit accordingly.

    `claim_token=None` is a callback: it may settle a SENDING or PENDING unit whoever holds it.
    A DELIVERED unit never changes again. A product or shop fault pauses the product or halts
    the provider first (`probe`: this purchase was the one testing that fault), and the unit
    waits for it without using a purchase attempt.
    """
    now = timezone.now()
    # Tied to the reference: an answer about an earlier purchase must never settle a later one.
    open_now = Q(pk=unit.pk, reference=unit.reference, status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING))
    mine = open_now & (Q(claim_token=claim_token) if claim_token is not None else Q())
    release = {"claim_token": "", "claim_expires_at": None}
    common = {"last_code": result.code[:50], "last_message": result.message[:500]}
    scope = result.failure_scope or ""
    # Raised before the unit moves: a unit sent back to WAITING must find the halt or pause.
    held_until = _raise_fault(unit=unit, result=result, provider_name=provider_name, probe=probe)

    if result.outcome == Outcome.DELIVERED:
        # A delivery is a fact: record it even if our claim has lapsed.
        condition = open_now
        values = {
            "status": DeliveryStatus.DELIVERED,
            "serial": result.serial[:255],
            "delivered_at": now,
            "failure_scope": "",
            "cost": result.price,
        }
    elif result.outcome == Outcome.PENDING:
        # Unknown outcome, or a status check the provider refused: same reference, checked later.
        checked = 1 if kind == AttemptKind.CHECK else 0
        wait = max(check_interval, _backoff(unit.status_checks + checked + 1, base=_PENDING_BACKOFF_BASE))
        condition = mine
        values = {
            "status": DeliveryStatus.PENDING,
            "next_attempt_at": now + wait,
            "status_checks": F("status_checks") + checked,
        }
    elif scope == FailureScope.CONFIGURATION and kind == AttemptKind.CHECK:
        # Credentials refused for a *check* say nothing about the purchase, which may still go
        # through: keep its reference and check again once the halt is lifted.
        condition = mine
        values = {"status": DeliveryStatus.PENDING, "next_attempt_at": now + check_interval}
    elif scope in NOT_THE_UNITS_SCOPES:
        # The purchase failed for good, for a reason that is not the unit's: nothing was bought,
        # so it waits for the halt or pause under a new reference, and this does not count as
        # one of its purchases.
        condition = mine
        values = _fresh_purchase(now=now, delay=timedelta(0), failure_scope=scope)
        values["next_attempt_at"] = held_until or now
        values["purchase_attempts"] = Greatest(F("purchase_attempts") - 1, 0)
    elif scope == FailureScope.RETRYABLE and unit.purchase_attempts < _max_attempts():
        condition = mine
        delay = max(_backoff(unit.purchase_attempts), timedelta(seconds=result.retry_after or 0))
        values = _fresh_purchase(now=now, delay=delay, failure_scope=scope)
    else:
        condition = mine
        values = {"status": DeliveryStatus.FAILED, "failure_scope": scope or FailureScope.PERMANENT}
    if (
        values["status"] == DeliveryStatus.WAITING
        and Order.objects.filter(pk=unit.order_id, status=OrderStatus.REFUNDED).exists()
    ):
        # Refunded while this purchase was out: it failed, and nothing new may be sent.
        values = {"status": DeliveryStatus.CANCELLED, "failure_scope": scope}

    with transaction.atomic():
        _record_attempt(
            unit=unit,
            reference=unit.reference,
            result=result,
            kind=kind,
            provider_name=provider_name,
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
        failure_scope=scope,
        balance=result.balance,
    )


def _record_attempt(
    *,
    unit: Delivery,
    reference: str,
    result: FulfillmentResult,
    kind: str,
    provider_name: str,
    started_at: datetime,
    finished_at: datetime,
    duration_ms: int,
) -> DeliveryAttempt:
    return DeliveryAttempt.objects.create(
        delivery_id=unit.pk,
        order_id=unit.order_id,
        provider=provider_name,
        reference=reference,
        sku=unit.sku,  # empty: the item's SKU, as on the unit
        price=result.price,
        kind=kind,
        outcome=result.outcome,
        failure_scope=result.failure_scope or "",
        code=result.code[:50],
        message=result.message[:500],
        serial=result.serial[:255],
        raw=result.raw,
        worker=worker_id(),
        started_at=started_at,
        finished_at=finished_at,
        duration_ms=duration_ms,
    )


def _raise_fault(*, unit: Delivery, result: FulfillmentResult, provider_name: str, probe: bool) -> datetime | None:
    """Halt the provider or pause the product when `result` says the fault is theirs; returns
    until when the unit should wait (the next probe, and at most the stale window: a lift wakes
    waiting units anyway, this only bounds how long one can be forgotten)."""
    scope = result.failure_scope
    if scope in SHOP_WIDE_SCOPES:
        fault = provider_halt(
            provider=provider_name,
            code=result.code,
            reason=result.message,
            scope=scope,
            retry_after=result.retry_after,
            balance=result.balance,
            probe=probe,
        )
    elif scope in PRODUCT_SCOPES:
        sku = unit.sku or unit.item.sku
        fault = product_pause(
            provider=provider_name,
            sku=sku,
            code=result.code,
            reason=result.message,
            # A backup SKU is no product's own: its pause names no product.
            product_id=unit.item.product_id if sku == unit.item.sku else None,
            retry_after=result.retry_after,
            probe=probe,
            kind=PauseKind.REPRICING if scope == FailureScope.PRICE else PauseKind.FAULT,
        )
    else:
        return None
    return fault_hold_until(fault)


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
        "released_at": None,
    }


# --- callbacks -------------------------------------------------------------------------------


def delivery_resolve_by_reference(*, reference: str, result: FulfillmentResult, provider_name: str) -> bool:
    """Take in a signed provider callback about `reference`. Every callback about a known
    reference is recorded as a DeliveryAttempt; it moves the unit only while the unit is open on
    that reference. One that contradicts what is recorded (a failure after a delivery, a delivery
    of a purchase recorded as failed or replaced) flags the order for staff. True when it settled
    the unit; False otherwise (unknown reference, still pending, already settled, a duplicate)."""
    unit = Delivery.objects.filter(reference=reference, provider=provider_name).first()
    if unit is None:
        # An earlier purchase of a unit: its reference was replaced after a failure.
        earlier = (
            DeliveryAttempt.objects.filter(reference=reference, provider=provider_name)
            .select_related("delivery")
            .order_by("-id")
            .first()
        )
        if earlier is None:
            logger.info(
                "Callback from %s for unknown reference %s: nothing to record it against", provider_name, reference
            )
            return False
        unit = earlier.delivery
    elif unit.status == DeliveryStatus.WAITING:
        return False  # its reference was never sent: no callback can be about it
    # A callback is its request's one subject: the view's own lines come after this returns.
    bind_order(order_log_extra(unit.order_id)["order"], pk=unit.order_id)
    is_open = unit.reference == reference and unit.status in (DeliveryStatus.SENDING, DeliveryStatus.PENDING)
    if is_open and result.outcome != Outcome.PENDING:
        delivery_record_result(
            unit=unit,
            result=result,
            kind=AttemptKind.CALLBACK,
            provider_name=provider_name,
            claim_token=None,
            started_at=timezone.now(),
            duration_ms=0,
        )
        settled = Delivery.objects.filter(pk=unit.pk).exclude(
            status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING)
        )
        if settled.exists():
            _complete_if_delivered(unit.order_id)
            return True
        return False
    now = timezone.now()
    attempt = _record_attempt(
        unit=unit,
        reference=reference,
        result=result,
        kind=AttemptKind.CALLBACK,
        provider_name=provider_name,
        started_at=now,
        finished_at=now,
        duration_ms=0,
    )
    if (
        result.outcome == Outcome.DELIVERED
        and reference == unit.reference
        and unit.status in (DeliveryStatus.REFUNDING, DeliveryStatus.REFUNDED)
    ):
        # Never silent: the money side withdraws a refund not sent yet, or flags the order.
        unit_delivered_after_refund.send(
            sender=Delivery, delivery_id=unit.pk, attempt_id=attempt.pk, serial=result.serial or ""
        )
        return Delivery.objects.filter(pk=unit.pk, status=DeliveryStatus.DELIVERED).exists()
    contradiction = _contradiction(unit=unit, reference=reference, result=result)
    if contradiction:
        order_flag_raise(
            order_id=unit.order_id,
            kind=FlagKind.CALLBACK_CONTRADICTS,
            reason=f"Unit {unit.unit_key}, reference {reference}: {contradiction}",
            delivery_id=unit.pk,
            attempt_id=attempt.pk,
        )
    return False


def _contradiction(*, unit: Delivery, reference: str, result: FulfillmentResult) -> str:
    """What is wrong when a callback about a settled unit (or an earlier purchase) disagrees with
    the record; empty when it agrees or says nothing new."""
    current = reference == unit.reference
    answer = f"rc {result.code or '?'}: {result.message[:200]}"
    if result.outcome == Outcome.FAILED and current and unit.status == DeliveryStatus.DELIVERED:
        return (
            f"the provider now reports the delivered purchase failed ({answer}). The customer may not have the "
            "goods, or the provider refunded the shop: check in the provider's panel, then redeliver or refund."
        )
    if result.outcome == Outcome.DELIVERED:
        if not current:
            return (
                f"the provider reports delivered a purchase recorded as failed and replaced (serial "
                f"{result.serial or 'none'}); the unit has since been bought under {unit.reference} "
                f"({unit.status}). The unit may have been delivered twice: check in the provider's panel."
            )
        if unit.status in (DeliveryStatus.FAILED, DeliveryStatus.CANCELLED):
            return (
                f"the provider reports delivered (serial {result.serial or 'none'}) a unit recorded as "
                f"{unit.status}. Check in the provider's panel: the customer may have the goods."
            )
        if unit.status == DeliveryStatus.DELIVERED and result.serial and unit.serial and result.serial != unit.serial:
            return f"the provider reports serial {result.serial}, but {unit.serial} was recorded and given out."
    return ""


def delivery_check_soon(*, reference: str, provider_name: str) -> bool:
    """An unverified hint that `reference` changed: check it with the provider soon, trusting
    nothing the hint said. A forged hint costs one status check, never a wrong delivery state.
    False when no open unit holds that reference."""
    unit = Delivery.objects.filter(
        reference=reference, provider=provider_name, status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING)
    ).first()
    if unit is None:
        return False
    bind_order(order_log_extra(unit.order_id)["order"], pk=unit.order_id)
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
