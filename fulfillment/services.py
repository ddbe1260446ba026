"""Delivery services: the only code that moves a Delivery between statuses.

Money-safety rules, and where each is enforced:

* Only a PAID order's units are claimed (claim query joins the order's status).
* One worker at a time per unit: a claim is a row lock (SKIP LOCKED where the database has
  it) plus a claim token with an expiry; a claim left by a dead worker expires and the unit
  is re-checked with the same reference.
* A unit is marked SENDING by a conditional UPDATE from WAITING just before the provider
  call; a refund cancels WAITING units by the same kind of UPDATE. The row lock orders the
  two, so a refunded order never sends another unit.
* After an unknown outcome (PENDING, timeout, exception, crash) the unit is re-checked with
  the same reference; a new reference is issued only after a FAILED answer.
* Every provider call leaves a DeliveryAttempt, whatever happens next.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from fulfillment.models import (
    OPEN_STATUSES,
    AttemptKind,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    ProviderHalt,
)
from fulfillment.providers.base import (
    UNKNOWN_OUTCOME_CODE,
    FailureScope,
    FulfillmentParams,
    FulfillmentProvider,
    FulfillmentResult,
    Outcome,
    release_database_connection,
)
from fulfillment.registry import get_fulfillment_provider, get_provider_class
from orders.models import Order, OrderItem
from orders.services import order_mark_fulfilled
from orders.state import OrderStatus

logger = logging.getLogger(__name__)

_HOST = socket.gethostname()


class OrderNotFound(Exception):
    def __init__(self, order_id: int) -> None:
        self.order_id = order_id
        super().__init__(f"Order {order_id} does not exist. Check the id in the admin (Orders).")


class OrderNotFulfillable(Exception):
    """The order is not PAID, so nothing may be delivered."""

    def __init__(self, order_id: int, status: str) -> None:
        self.order_id = order_id
        self.status = status
        super().__init__(
            f"Order {order_id} is {status}, not paid: only paid orders are delivered."
            + (" It is already fulfilled." if status == OrderStatus.FULFILLED else "")
        )


def new_reference() -> str:
    # Random rather than derived from ids: two environments sharing a provider account (or a
    # database restored from backup) must never collide on a reference.
    return uuid.uuid4().hex[:24]


def _worker_id() -> str:
    return f"{_HOST}:{os.getpid()}:{threading.get_ident()}"[:120]


def _backoff(attempt: int, *, base: float | None = None, cap: float | None = None) -> timedelta:
    """Exponential backoff with full jitter: attempt 1 waits up to base, then 2x, 4x... up to cap."""
    base = settings.FULFILLMENT_RETRY_BASE_SECONDS if base is None else base
    cap = settings.FULFILLMENT_RETRY_MAX_SECONDS if cap is None else cap
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


# Pending purchases are re-checked sooner than failed ones are re-bought.
_PENDING_BACKOFF_BASE = 15.0


def _max_attempts() -> int:
    return settings.FULFILLMENT_MAX_PURCHASE_ATTEMPTS


# --- creating and queueing -----------------------------------------------------------------


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
        logger.exception("Could not queue the delivery of order %s; reconciliation will queue it", order_id)
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
        order = Order.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            raise OrderNotFound(order_id)
        if order.status != OrderStatus.PAID:
            raise OrderNotFulfillable(order_id, order.status)
        deliveries_create(order_id=order_id)
        now = timezone.now()
        failed = list(Delivery.objects.filter(order_id=order_id, status=DeliveryStatus.FAILED))
        held = [] if rebuy_unknown else [delivery for delivery in failed if _may_have_been_delivered(delivery)]
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
        if held_unknown:
            return RetryDecision(
                order_id, queued=False, reason="only units with an unknown outcome remain", held_unknown=held_unknown
            )
        _complete_if_delivered(order_id)
        return RetryDecision(order_id, queued=False, reason="every unit is already delivered")
    return RetryDecision(order_id, queued=True, held_unknown=held_unknown)


def _may_have_been_delivered(delivery: Delivery) -> bool:
    if delivery.last_code == UNKNOWN_OUTCOME_CODE:
        return True
    try:
        codes = get_provider_class(delivery.provider).review_before_rebuy_codes if delivery.provider else frozenset()
    except ImproperlyConfigured:
        return True  # a provider no longer registered: nobody can tell, so a person decides
    return delivery.last_code in codes


def order_fulfillment_retry(*, order_id: int) -> RetryDecision:
    """Staff retry: reset failed units and queue a background run. Raises for a non-PAID order."""
    decision = order_fulfillment_reset_for_retry(order_id=order_id)
    if decision.queued:
        with transaction.atomic():
            order_fulfillment_queue(order_id=order_id)
    return decision


# --- the delivery run ------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitReport:
    delivery_id: int
    unit_key: str
    reference: str
    kind: str
    outcome: str
    code: str = ""
    message: str = ""
    serial: str = ""
    failure_scope: str = ""


@dataclass
class FulfillmentReport:
    order_id: int
    units_total: int = 0
    units_delivered: int = 0
    units: list[UnitReport] = field(default_factory=list)
    skipped: str = ""
    order_status: str = ""

    @property
    def failed(self) -> list[UnitReport]:
        return [unit for unit in self.units if unit.outcome == Outcome.FAILED]

    @property
    def complete(self) -> bool:
        return self.units_total > 0 and self.units_delivered == self.units_total


ProgressCallback = Callable[[UnitReport], None]


def fulfill_order(
    order_id: int,
    items: Iterable[int | OrderItem] | None = None,
    provider: str | FulfillmentProvider | None = None,
    *,
    on_unit: ProgressCallback | None = None,
) -> FulfillmentReport:
    """Deliver every unit of a PAID order that is due and not delivered; return what happened.

    `items` limits the run to those order items; `provider` (a name or an instance) is used
    for new purchases, while a pending purchase is always checked with the provider that
    holds its reference. Moves the order to FULFILLED when every unit is delivered.
    A REFUNDED order's units that were already sent (SENDING, PENDING) are still checked until
    their outcome is known; nothing new is sent for it.
    Raises OrderNotFound / OrderNotFulfillable; never raises for a provider's failure.
    """
    status = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
    if status is None:
        raise OrderNotFound(order_id)
    if status not in (OrderStatus.PAID, OrderStatus.REFUNDED):
        raise OrderNotFulfillable(order_id, status)
    report = FulfillmentReport(order_id=order_id)
    item_ids = None if items is None else [item.pk if isinstance(item, OrderItem) else int(item) for item in items]

    if isinstance(provider, FulfillmentProvider):
        default_provider, default_name = provider, provider.name
    else:
        default_name = provider or settings.FULFILLMENT_PROVIDER
        default_provider = get_fulfillment_provider(default_name)

    claim_token = uuid.uuid4().hex
    units = _claim_due_units(order_id=order_id, item_ids=item_ids, claim_token=claim_token)
    halted = set(ProviderHalt.objects.values_list("provider", flat=True)) if units else set()
    for unit in units:
        # A new purchase goes to the chosen provider; an earlier one is checked where it was made.
        name = default_name if unit.status == DeliveryStatus.WAITING else (unit.provider or default_name)
        if name in halted:
            _postpone(unit, claim_token)
            report.skipped = f"provider {name} is halted (see Fulfillment > Provider halts)"
            continue
        try:
            unit_provider = default_provider if name == default_name else get_fulfillment_provider(name)
        except ImproperlyConfigured as exc:
            logger.error("Unit %s cannot be checked: %s", unit.unit_key, exc)
            _postpone(unit, claim_token)
            report.skipped = f"provider {name} of an earlier purchase is not usable: {exc}"
            continue
        unit_report = _process_unit(unit, provider=unit_provider, provider_name=name, claim_token=claim_token)
        if unit_report is None:
            continue
        report.units.append(unit_report)
        if on_unit:
            on_unit(unit_report)
        if unit_report.failure_scope == FailureScope.CONFIGURATION:
            halted.add(name)

    counts = _unit_counts(order_id)
    report.units_total = counts["total"]
    report.units_delivered = counts["delivered"]
    report.order_status = _complete_if_delivered(order_id, counts=counts)
    return report


# Units a run may work on: any of a PAID order; of a REFUNDED order only those already sent,
# whose outcome must still be learned (a refund stops what was not sent, not what was).
_WORKABLE = Q(order__status=OrderStatus.PAID) | Q(
    order__status=OrderStatus.REFUNDED, status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING)
)


def _claim_due_units(*, order_id: int, item_ids: list[int] | None, claim_token: str) -> list[Delivery]:
    now = timezone.now()
    not_claimed = Q(claim_expires_at__isnull=True) | Q(claim_expires_at__lt=now)
    due = Q(status__in=(DeliveryStatus.WAITING, DeliveryStatus.PENDING), next_attempt_at__lte=now) | Q(
        status=DeliveryStatus.SENDING  # its claim expired: the worker died mid-call
    )
    # Units exist for every PAID order: they are created in the transaction that marks it paid.
    with transaction.atomic():
        qs = Delivery.objects.filter(_WORKABLE, not_claimed, due, order_id=order_id)
        if item_ids is not None:
            qs = qs.filter(item_id__in=item_ids)
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        units = list(qs.select_related("item__product").order_by("item_id", "unit_index"))
        if units:
            Delivery.objects.filter(pk__in=[unit.pk for unit in units]).update(
                claim_token=claim_token,
                claim_expires_at=now + timedelta(seconds=settings.FULFILLMENT_CLAIM_SECONDS),
                queued_at=None,
            )
    return units


def _postpone(unit: Delivery, claim_token: str) -> None:
    # Its provider is halted: look again later rather than on every reconciliation.
    Delivery.objects.filter(pk=unit.pk, claim_token=claim_token).update(
        claim_token="",
        claim_expires_at=None,
        next_attempt_at=timezone.now() + timedelta(seconds=settings.FULFILLMENT_STALE_AFTER_SECONDS),
    )


def _params(unit: Delivery) -> FulfillmentParams:
    product = unit.item.product
    return FulfillmentParams(
        reference=unit.reference,
        unit_key=unit.unit_key,
        sku=product.sku,
        recipient=unit.item.recipient,
        order_id=unit.order_id,
        max_price=product.max_provider_price,
        first_sent_at=unit.reference_sent_at,
    )


def _process_unit(
    unit: Delivery, *, provider: FulfillmentProvider, provider_name: str, claim_token: str
) -> UnitReport | None:
    if unit.status == DeliveryStatus.WAITING:
        kind = AttemptKind.PURCHASE
        now = timezone.now()
        # The last gate before money moves: WAITING -> SENDING on the row itself, which a
        # refund's cancellation of WAITING units cannot interleave with.
        sent = Delivery.objects.filter(pk=unit.pk, claim_token=claim_token, status=DeliveryStatus.WAITING).update(
            status=DeliveryStatus.SENDING,
            provider=provider_name,
            reference_sent_at=now,
            # Renewed per unit: an order's units are sent one after another under one claim.
            claim_expires_at=now + timedelta(seconds=settings.FULFILLMENT_CLAIM_SECONDS),
            purchase_attempts=F("purchase_attempts") + 1,
        )
        if not sent:
            return None
        unit.provider, unit.reference_sent_at = provider_name, now
        unit.purchase_attempts += 1
    else:
        kind = AttemptKind.CHECK
        age_limit = provider.max_check_age
        if age_limit and unit.reference_sent_at and timezone.now() - unit.reference_sent_at > age_limit:
            return _give_up_checking(unit, claim_token=claim_token, provider_name=provider_name)

    params = _params(unit)
    release_database_connection()
    started = timezone.now()
    clock = time.monotonic()
    try:
        result = provider.fulfill(params) if kind == AttemptKind.PURCHASE else provider.check_status(params)
    except Exception as exc:  # noqa: BLE001 - an exception is an unknown outcome by contract
        logger.exception("Provider %s raised for reference %s", provider_name, unit.reference)
        result = FulfillmentResult.pending(
            code="exception", message=f"{type(exc).__name__} from provider; outcome unknown, will re-check."
        )
    duration_ms = int((time.monotonic() - clock) * 1000)
    return delivery_record_result(
        unit=unit,
        result=result,
        kind=kind,
        provider_name=provider_name,
        claim_token=claim_token,
        started_at=started,
        duration_ms=duration_ms,
        check_interval=provider.min_check_interval,
    )


def _give_up_checking(unit: Delivery, *, claim_token: str, provider_name: str) -> UnitReport:
    result = FulfillmentResult.failed(
        scope=FailureScope.PERMANENT,
        code=UNKNOWN_OUTCOME_CODE,
        message=(
            "Outcome still unknown and the reference is too old to check again. Ask the provider "
            "whether it was delivered before retrying, or the unit could be bought twice."
        ),
    )
    return delivery_record_result(
        unit=unit,
        result=result,
        kind=AttemptKind.CHECK,
        provider_name=provider_name,
        claim_token=claim_token,
        started_at=timezone.now(),
        duration_ms=0,
    )


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


def _unit_counts(order_id: int) -> dict[str, int]:
    from django.db.models import Count

    return Delivery.objects.filter(order_id=order_id).aggregate(
        total=Count("id"), delivered=Count("id", filter=Q(status=DeliveryStatus.DELIVERED))
    )


def _complete_if_delivered(order_id: int, *, counts: dict[str, int] | None = None) -> str:
    """PAID -> FULFILLED when every unit is delivered; returns the order's status."""
    counts = counts or _unit_counts(order_id)
    if counts["total"] and counts["total"] == counts["delivered"]:
        from orders.state import IllegalTransition

        try:
            return order_mark_fulfilled(order_id=order_id).current
        except IllegalTransition as exc:
            return exc.current  # refunded meanwhile: the order keeps that status
    return Order.objects.filter(pk=order_id).values_list("status", flat=True).get()


# --- callbacks, halts, reconciliation ---------------------------------------------------------


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


def provider_halt(*, provider: str, code: str, reason: str) -> None:
    """Stop every delivery through `provider` until staff delete the halt."""
    ProviderHalt.objects.get_or_create(provider=provider, defaults={"code": code, "reason": reason})
    logger.error("Deliveries through %s halted: %s (code %s)", provider, reason, code)


def provider_resume(*, provider: str) -> int:
    """Lift a halt; due units are picked up by the next reconciliation."""
    deleted, _ = ProviderHalt.objects.filter(provider=provider).delete()
    if deleted:
        Delivery.objects.filter(
            Q(provider=provider) | Q(provider=""), status__in=(DeliveryStatus.WAITING, DeliveryStatus.PENDING)
        ).update(next_attempt_at=timezone.now())
    return deleted


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
        candidates = candidates.exclude(provider__in=halted)
    order_ids = list(candidates.order_by("order_id").values_list("order_id", flat=True).distinct()[:limit])
    # Orders paid but without units (payment committed, creation lost) are repaired too.
    missing = list(
        Order.objects.filter(status=OrderStatus.PAID, paid_at__lt=stale, deliveries__isnull=True).values_list(
            "id", flat=True
        )[:limit]
    )
    order_ids = sorted(set(order_ids) | set(missing))
    for order_id in sorted(set(missing)):
        deliveries_create(order_id=order_id)
    for order_id in order_ids:
        with transaction.atomic():
            order_fulfillment_queue(order_id=order_id)
    if order_ids:
        logger.info("Reconciliation queued %d paid order(s): %s", len(order_ids), order_ids[:20])
    # A unit that failed back to WAITING just as its order was refunded would wait for ever.
    Delivery.objects.filter(status=DeliveryStatus.WAITING, order__status=OrderStatus.REFUNDED).update(
        status=DeliveryStatus.CANCELLED, last_message="Order refunded before this unit was sent."
    )
    # A worker that died between recording the last unit's delivery and marking the order
    # fulfilled leaves a PAID order with nothing due, which nothing above would ever look at.
    unfinished = Delivery.objects.filter(order=OuterRef("pk")).exclude(status=DeliveryStatus.DELIVERED)
    delivered = (
        Order.objects.filter(Exists(Delivery.objects.filter(order=OuterRef("pk"))), status=OrderStatus.PAID)
        .exclude(Exists(unfinished))
        .values_list("id", flat=True)[:limit]
    )
    for order_id in delivered:
        status = _complete_if_delivered(order_id)
        logger.warning("Reconciliation found order %s paid with every unit delivered; it is now %s", order_id, status)
    return order_ids
