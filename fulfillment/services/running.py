"""The delivery run: claim an order's due units and call the provider for each."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import BigIntegerField, CharField, Exists, F, Max, Q, Value
from django.utils import timezone

from fulfillment.models import (
    BLOCKING_FLAG_KINDS,
    AttemptKind,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    OrderFlag,
    ProductPause,
    ProviderHalt,
)
from fulfillment.providers.base import (
    PRODUCT_SCOPES,
    SHOP_WIDE_SCOPES,
    UNKNOWN_OUTCOME_CODE,
    FailureScope,
    FulfillmentParams,
    FulfillmentProvider,
    FulfillmentResult,
    Outcome,
    release_database_connection,
)
from fulfillment.registry import get_fulfillment_provider
from fulfillment.selectors import order_unit_counts
from fulfillment.services.common import (
    _WORKABLE,
    OrderNotFound,
    OrderNotFulfillable,
    UnitReport,
    _complete_if_delivered,
)
from fulfillment.services.funding import provider_release_by_deposit
from fulfillment.services.halts import fault_hold_until, fault_probe_claim, product_resume, provider_resume
from fulfillment.services.results import delivery_record_result
from fulfillment.services.routing import (
    Route,
    RouteBook,
    pause_holds,
    pauses_holding,
    unit_max_price,
    unit_route_switch,
    unit_sku,
)
from fulfillment_site.logs import order_logging
from orders.models import Order, OrderItem
from orders.state import OrderStatus

logger = logging.getLogger(__name__)


@dataclass
class FulfillmentReport:
    order_id: int
    order_public_id: str = ""
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

    `items` limits the run to those order items. A new purchase goes to `provider` (a name or an
    instance) when given, else to the provider its item was sold with (OrderItem.provider; the
    configured one for items older than that field); a pending purchase is always checked with
    the provider that holds its reference. Moves the order to FULFILLED when every unit is delivered.
    A REFUNDED order's units that were already sent (SENDING, PENDING) are still checked until
    their outcome is known; nothing new is sent for it.
    Raises OrderNotFound / OrderNotFulfillable; never raises for a provider's failure.
    """
    row = Order.objects.filter(pk=order_id).values_list("status", "public_id").first()
    if row is None:
        raise OrderNotFound(order_id)
    status, public_id = row
    if status not in (OrderStatus.PAID, OrderStatus.REFUNDED):
        raise OrderNotFulfillable(order_id, status, public_id=public_id)
    with order_logging(public_id, pk=order_id):
        report = _deliver_due_units(order_id, items=items, provider=provider, on_unit=on_unit)
    report.order_public_id = public_id
    return report


def _deliver_due_units(
    order_id: int,
    *,
    items: Iterable[int | OrderItem] | None,
    provider: str | FulfillmentProvider | None,
    on_unit: ProgressCallback | None,
) -> FulfillmentReport:
    report = FulfillmentReport(order_id=order_id)
    item_ids = None if items is None else [item.pk if isinstance(item, OrderItem) else int(item) for item in items]

    chosen = provider is not None  # an operator's choice for new purchases, over each item's own
    if isinstance(provider, FulfillmentProvider):
        default_provider, default_name = provider, provider.name
    else:
        default_name = provider or settings.FULFILLMENT_PROVIDER
        default_provider = get_fulfillment_provider(default_name)

    # A unit refused by one SKU for a product fault goes through its next SKU in a further pass of
    # the same run (routing), as many passes as a product may have SKUs.
    for _pass in range(settings.FULFILLMENT_MAX_ROUTES):
        rerouted = _deliver_pass(
            order_id,
            report=report,
            item_ids=item_ids,
            chosen=chosen,
            default_name=default_name,
            default_provider=default_provider,
            on_unit=on_unit,
        )
        if not rerouted:
            break

    counts = order_unit_counts(order_id=order_id)
    report.units_total = counts["total"]
    report.units_delivered = counts["delivered"]
    report.order_status = _complete_if_delivered(order_id, counts=counts)
    return report


def _deliver_pass(
    order_id: int,
    *,
    report: FulfillmentReport,
    item_ids: list[int] | None,
    chosen: bool,
    default_name: str,
    default_provider: FulfillmentProvider,
    on_unit: ProgressCallback | None,
) -> int:
    """Claim the order's due units and work on each once; returns how many were refused by a SKU
    for a product fault and may go through another SKU now."""
    claim_token = uuid.uuid4().hex
    units = _claim_due_units(order_id=order_id, item_ids=item_ids, claim_token=claim_token)
    if not units:
        return 0
    with _claims_released_on_error(claim_token):
        routes = RouteBook.load(units, default_provider=default_name)
        faults = _Faults.load(skus=routes.skus(units))
        rerouted = 0
        for unit in units:
            # A new purchase goes to the chosen provider, else through the unit's route; an earlier one is
            # checked where it was made, with the SKU it was made with.
            purchase = unit.status == DeliveryStatus.WAITING
            max_price = unit_max_price(unit)
            if purchase and chosen:
                name = default_name
            elif purchase:
                item_provider = unit.item.provider or default_name
                route = routes.choose(
                    unit,
                    item_provider=item_provider,
                    held=lambda route, limit=max_price: bool(
                        faults.blocking(provider=route.provider, sku=route.sku, max_price=limit, lift=False)
                    ),
                )
                if route != routes.current(unit, item_provider=item_provider) and not unit_route_switch(
                    unit=unit, route=route, item_provider=item_provider, claim_token=claim_token
                ):
                    continue  # the unit moved on meanwhile (a refund, a staff stop)
                name = route.provider
            else:
                name = unit.provider or default_name
            sku = unit_sku(unit)
            # A halt stops every call through the provider; a pause stops new purchases of its SKU.
            blocking = faults.blocking(provider=name, sku=sku if purchase else None, max_price=max_price)
            if purchase and (unit.released_at is not None or unit.pk in faults.released):
                # Released through a deposit halt: the deposit seen covers this purchase.
                blocking = [fault for fault in blocking if not isinstance(fault, ProviderHalt)]
            probe = None
            if blocking:
                if len(blocking) == 1 and purchase and faults.probe_due(blocking[0]) and fault_probe_claim(blocking[0]):
                    probe = blocking[0]  # this purchase tests whether the fault is gone
                else:
                    _postpone(unit, claim_token, until=fault_hold_until(blocking[0]))
                    report.skipped = _held_back(blocking[0])
                    continue
            try:
                unit_provider = default_provider if name == default_name else get_fulfillment_provider(name)
            except ImproperlyConfigured as exc:
                logger.error("Unit %s cannot be checked: %s", unit.unit_key, exc)
                _postpone(unit, claim_token)
                report.skipped = f"provider {name} of an earlier purchase is not usable: {exc}"
                continue
            unit_report = _process_unit(
                unit, provider=unit_provider, provider_name=name, claim_token=claim_token, probe=probe, faults=faults
            )
            if unit_report is None:
                continue
            report.units.append(unit_report)
            if on_unit:
                on_unit(unit_report)
            scope = unit_report.failure_scope
            if probe is not None and not faults.same_kind(probe, scope):
                reason = f"a probe purchase met no such fault (answer: {unit_report.code or '-'})"
                faults.lift(probe, reason=reason, balance=unit_report.balance)
            if scope in SHOP_WIDE_SCOPES:
                faults.reload_halt(name)
            elif scope in PRODUCT_SCOPES:
                faults.reload_pause(name, sku)
                if purchase and not chosen and _route_again(unit, routes=routes, faults=faults, name=name, sku=sku):
                    rerouted += 1
        return rerouted


@contextmanager
def _claims_released_on_error(claim_token: str) -> Iterator[None]:
    """A run stopped by an error (a database deadlock, a lost connection, a worker shutdown) lets
    go of the units it still holds, so its retry or the next run works on them now rather than
    when the claim expires. A WAITING unit was never sent; a SENDING or PENDING one keeps its
    status and reference, so the next run checks it by reference as after an expired claim: never
    bought twice. Best effort: when the database is what failed, the claims expire on their own."""
    try:
        yield
    except BaseException:
        try:
            released = Delivery.objects.filter(claim_token=claim_token).update(claim_token="", claim_expires_at=None)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            logger.warning(
                "A stopped delivery run could not release its claims; they expire on their own", exc_info=True
            )
        else:
            if released:
                logger.warning("A stopped delivery run released %s unit(s) it held", released)
        raise


def _route_again(unit: Delivery, *, routes: RouteBook, faults: _Faults, name: str, sku: str) -> bool:
    """After a product fault refused the unit's SKU: if another of its routes is free, make the unit
    due at once so the run's next pass buys it there. Only a unit back to WAITING (the refusal was a
    final answer; its new reference was never sent) moves: never one whose outcome is unknown."""
    item_provider = unit.item.provider or name
    others = [route for route in routes.routes(unit, item_provider=item_provider) if route != Route(name, sku)]
    limit = unit_max_price(unit)
    if not any(not faults.blocking(provider=r.provider, sku=r.sku, max_price=limit, lift=False) for r in others):
        return False
    return bool(
        Delivery.objects.filter(pk=unit.pk, status=DeliveryStatus.WAITING, claim_token="").update(
            next_attempt_at=timezone.now()
        )
    )


# Units a run may work on: any of a PAID order; of a REFUNDED order only those already sent,
# whose outcome must still be learned (a refund stops what was not sent, not what was).
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
            qs = qs.select_for_update(skip_locked=True, no_key=True, of=("self",))
        units = list(qs.select_related("item").order_by("item_id", "unit_index"))
        if units:
            Delivery.objects.filter(pk__in=[unit.pk for unit in units]).update(
                claim_token=claim_token,
                claim_expires_at=now + timedelta(seconds=settings.FULFILLMENT_CLAIM_SECONDS),
                queued_at=None,
            )
    return units


def _postpone(unit: Delivery, claim_token: str, *, until: datetime | None = None) -> None:
    # Held back (a halt, a pause, an unusable provider): look again later rather than on every
    # reconciliation. A lift makes held units due at once.
    Delivery.objects.filter(pk=unit.pk, claim_token=claim_token).update(
        claim_token="",
        claim_expires_at=None,
        next_attempt_at=until or timezone.now() + timedelta(seconds=settings.FULFILLMENT_STALE_AFTER_SECONDS),
    )


def _held_back(fault: ProviderHalt | ProductPause) -> str:
    if isinstance(fault, ProviderHalt):
        return f"provider {fault.provider} is halted (see Fulfillment > Provider halts)"
    return f"product {fault.sku} is paused at {fault.provider} (see Fulfillment > Product pauses)"


class _Faults:
    """The halts and pauses one run works with: read once, with one statement, when the run starts,
    and re-read only when one of its own answers raises or lifts one."""

    def __init__(self) -> None:
        self.halts: dict[str, ProviderHalt] = {}
        self.pauses: dict[tuple[str, str], ProductPause] = {}
        self.released: set[int] = set()  # units this run's probe released through a deposit halt

    @classmethod
    def load(cls, *, skus: set[str]) -> _Faults:
        faults = cls()
        columns = ("pk", "provider", "sku", "next_probe_at", "clears_at", "kind", "price")
        halts = ProviderHalt.objects.annotate(
            fault=Value("halt"),
            sku=Value("", output_field=CharField()),
            kind=Value("", output_field=CharField()),
            price=Value(None, output_field=BigIntegerField()),
        )
        pauses = ProductPause.objects.filter(sku__in=skus).annotate(fault=Value("pause"))
        rows = halts.values_list("fault", *columns).union(pauses.values_list("fault", *columns), all=True)
        for fault, pk, provider, sku, next_probe_at, clears_at, kind, price in rows:
            values = {"pk": pk, "provider": provider, "next_probe_at": next_probe_at, "clears_at": clears_at}
            if fault == "halt":
                faults.halts[provider] = ProviderHalt(**values)
            else:
                faults.pauses[(provider, sku)] = ProductPause(sku=sku, kind=kind, price=price, **values)
        return faults

    def blocking(
        self, *, provider: str, sku: str | None, max_price: int | None = None, lift: bool = True
    ) -> list[ProviderHalt | ProductPause]:
        """The faults holding back a call through `provider` (a new purchase of `sku` that may cost
        at most `max_price`, when given). One whose wait the provider asked for is over is lifted
        here (with `lift`; otherwise it no longer counts)."""
        pause = self.pauses.get((provider, sku)) if sku is not None else None
        if pause is not None and not pause_holds(pause, max_price=max_price):
            pause = None
        now = timezone.now()
        blocking = []
        for fault in filter(None, (self.halts.get(provider), pause)):
            if fault.clears_at and fault.clears_at <= now:
                if lift:
                    self.lift(fault, reason="the wait the provider asked for is over")
            else:
                blocking.append(fault)
        return blocking

    @staticmethod
    def probe_due(fault: ProviderHalt | ProductPause) -> bool:
        return fault.next_probe_at is not None and fault.next_probe_at <= timezone.now()

    @staticmethod
    def same_kind(fault: ProviderHalt | ProductPause, scope: str) -> bool:
        """Whether an answer of `scope` is the fault `fault` again."""
        return scope in SHOP_WIDE_SCOPES if isinstance(fault, ProviderHalt) else scope in PRODUCT_SCOPES

    def lift(self, fault: ProviderHalt | ProductPause, *, reason: str, balance: int | None = None) -> None:
        if isinstance(fault, ProviderHalt):
            # A deposit halt lifts as far as the deposit the answer reported covers what waits.
            released = None
            if balance is not None:
                released = provider_release_by_deposit(provider=fault.provider, balance=balance, source=reason)
            if released is None:
                provider_resume(provider=fault.provider, reason=reason)
            if released is None or released.lifted:
                self.halts.pop(fault.provider, None)
            else:
                self.released.update(unit.pk for unit in released.plan.release)
                self.reload_halt(fault.provider)
        else:
            product_resume(provider=fault.provider, sku=fault.sku, reason=reason)
            self.pauses.pop((fault.provider, fault.sku), None)

    def reload_halt(self, provider: str) -> None:
        halt = ProviderHalt.objects.filter(provider=provider).first()
        if halt is not None:
            self.halts[provider] = halt

    def reload_pause(self, provider: str, sku: str) -> None:
        pause = ProductPause.objects.filter(provider=provider, sku=sku).first()
        if pause is not None:
            self.pauses[(provider, sku)] = pause


def _params(unit: Delivery) -> FulfillmentParams:
    # What the item was sold as, never the product as edited since: a re-check must send the same
    # SKU as the purchase it checks, and undelivered units buy what the customer paid for.
    item = unit.item
    return FulfillmentParams(
        reference=unit.reference,
        unit_key=unit.unit_key,
        sku=unit_sku(unit),
        recipient=item.recipient,
        order_id=unit.order_id,
        max_price=unit_max_price(unit),
        first_sent_at=unit.reference_sent_at,
    )


def _process_unit(
    unit: Delivery,
    *,
    provider: FulfillmentProvider,
    provider_name: str,
    claim_token: str,
    probe: ProviderHalt | ProductPause | None = None,
    faults: _Faults | None = None,
) -> UnitReport | None:
    if unit.status == DeliveryStatus.WAITING:
        kind = AttemptKind.PURCHASE
        now = timezone.now()
        # The last gate before money moves: WAITING -> SENDING on the row itself, which a
        # refund's cancellation of WAITING units cannot interleave with, and which a halt or pause
        # raised by another run since this one started also stops (unless this is its probe).
        gate = Delivery.objects.filter(pk=unit.pk, claim_token=claim_token, status=DeliveryStatus.WAITING)
        if not isinstance(probe, ProviderHalt):
            # A unit released through a deposit halt passes it (services.funding).
            gate = gate.exclude(Exists(ProviderHalt.objects.filter(provider=provider_name)), released_at__isnull=True)
        if not isinstance(probe, ProductPause):
            paused = pauses_holding(provider=provider_name, sku=unit_sku(unit), max_price=unit_max_price(unit))
            gate = gate.exclude(Exists(paused))
        # An order flagged because its money does not add up (a portal refund no units match, a
        # broken ledger) buys nothing until staff resolve the flag.
        blocked = OrderFlag.objects.filter(
            order_id=unit.order_id, kind__in=BLOCKING_FLAG_KINDS, resolved_at__isnull=True
        )
        gate = gate.exclude(Exists(blocked))
        sent = gate.update(
            status=DeliveryStatus.SENDING,
            provider=provider_name,
            reference_sent_at=now,
            released_at=None,  # a release covers one purchase
            # Renewed per unit: an order's units are sent one after another under one claim.
            claim_expires_at=now + timedelta(seconds=settings.FULFILLMENT_CLAIM_SECONDS),
            purchase_attempts=F("purchase_attempts") + 1,
        )
        if not sent:
            if blocked.exists():
                _postpone(unit, claim_token)
                return None
            _hold_if_faulted(unit, provider_name=provider_name, claim_token=claim_token, faults=faults)
            return None
        unit.provider, unit.reference_sent_at = provider_name, now
        unit.purchase_attempts += 1
    else:
        kind = AttemptKind.CHECK
        age_limit = provider.max_check_age
        if age_limit and unit.reference_sent_at and timezone.now() - unit.reference_sent_at > age_limit:
            return _give_up_checking(unit, claim_token=claim_token, provider_name=provider_name)
        # An order's units are checked one after another under one claim; by the time this one's
        # turn comes its claim may have expired and another run may have checked it. Renew the
        # claim on the row, still ours and still due, or leave the unit alone.
        now = timezone.now()
        renewable = Delivery.objects.filter(
            Q(status=DeliveryStatus.SENDING) | Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now),
            pk=unit.pk,
            claim_token=claim_token,
            reference=unit.reference,
        )
        # The one place a reference is asked about again, so the one place the provider's minimum
        # interval is kept, whatever made the unit due (a lift, a sweep, a hint, a staff retry).
        renewed = _not_asked_within(renewable, unit=unit, interval=provider.min_check_interval, now=now).update(
            claim_expires_at=now + timedelta(seconds=settings.FULFILLMENT_CLAIM_SECONDS)
        )
        if not renewed:
            _wait_for_check_interval(unit, claim_token=claim_token, interval=provider.min_check_interval, now=now)
            return None

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
        probe=probe is not None,
    )


def _requests_since(unit: Delivery, *, since: datetime):
    """The calls that asked the provider about the unit's current reference after `since`: its
    purchase and its status checks (a callback is the provider asking us, not a request)."""
    return DeliveryAttempt.objects.filter(
        delivery_id=unit.pk,
        reference=unit.reference,
        kind__in=(AttemptKind.PURCHASE, AttemptKind.CHECK),
        started_at__gt=since,
    )


def _not_asked_within(units, *, unit: Delivery, interval: timedelta, now: datetime):
    """`units` narrowed to the unit if its reference was neither sent nor checked in the last
    `interval`. The purchase counts from `reference_sent_at` too: a call still in flight (or
    whose worker died) has no attempt recorded yet."""
    if not interval:
        return units
    since = now - interval
    return units.exclude(reference_sent_at__gt=since).exclude(Exists(_requests_since(unit, since=since)))


def _wait_for_check_interval(unit: Delivery, *, claim_token: str, interval: timedelta, now: datetime) -> None:
    """The check was refused as too soon after the last request about the reference: release the
    unit, due again once the provider's minimum interval has passed since that request. A unit
    that moved on meanwhile (another run, a callback) is left alone."""
    if not interval:
        return
    since = now - interval  # the same window the refused renewal looked at
    last = _requests_since(unit, since=since).aggregate(last=Max("started_at"))["last"]
    sent = Delivery.objects.filter(pk=unit.pk).values_list("reference_sent_at", flat=True).first()
    latest = max(filter(None, (last, sent if sent and sent > since else None)), default=None)
    if latest is None:
        return
    logger.info("Unit %s not checked yet: %s was asked about at %s", unit.unit_key, unit.reference, latest)
    if unit.status == DeliveryStatus.SENDING:
        # Its claim is what makes a SENDING unit wait (and the sweep look at it once expired).
        Delivery.objects.filter(pk=unit.pk, claim_token=claim_token, status=DeliveryStatus.SENDING).update(
            claim_expires_at=latest + interval
        )
        return
    _postpone(unit, claim_token, until=latest + interval)


def _hold_if_faulted(unit: Delivery, *, provider_name: str, claim_token: str, faults: _Faults | None) -> None:
    """The gate refused a purchase: if a halt or pause appeared meanwhile, hold the unit for it
    (the rest of the run will see it too); otherwise the unit moved on (a refund, another run)."""
    fault = (
        ProviderHalt.objects.filter(provider=provider_name).first()
        or pauses_holding(provider=provider_name, sku=unit_sku(unit), max_price=unit_max_price(unit)).first()
    )
    if fault is None:
        return
    _postpone(unit, claim_token, until=fault_hold_until(fault))
    if faults is not None:
        if isinstance(fault, ProviderHalt):
            faults.halts[provider_name] = fault
        else:
            faults.pauses[(provider_name, fault.sku)] = fault


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
