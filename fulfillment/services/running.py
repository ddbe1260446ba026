"""The delivery run: claim an order's due units and call the provider for each."""

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from fulfillment.models import (
    AttemptKind,
    Delivery,
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
from fulfillment.registry import get_fulfillment_provider
from fulfillment.services.common import (
    _WORKABLE,
    OrderNotFound,
    OrderNotFulfillable,
    UnitReport,
    _complete_if_delivered,
    _unit_counts,
)
from fulfillment.services.results import delivery_record_result
from orders.models import Order, OrderItem
from orders.state import OrderStatus

logger = logging.getLogger(__name__)


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

    `items` limits the run to those order items. A new purchase goes to `provider` (a name or an
    instance) when given, else to the provider its item was sold with (OrderItem.provider; the
    configured one for items older than that field); a pending purchase is always checked with
    the provider that holds its reference. Moves the order to FULFILLED when every unit is delivered.
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

    chosen = provider is not None  # an operator's choice for new purchases, over each item's own
    if isinstance(provider, FulfillmentProvider):
        default_provider, default_name = provider, provider.name
    else:
        default_name = provider or settings.FULFILLMENT_PROVIDER
        default_provider = get_fulfillment_provider(default_name)

    claim_token = uuid.uuid4().hex
    units = _claim_due_units(order_id=order_id, item_ids=item_ids, claim_token=claim_token)
    halted = set(ProviderHalt.objects.values_list("provider", flat=True)) if units else set()
    for unit in units:
        # A new purchase goes to the chosen provider, else to the item's; an earlier one is checked
        # where it was made.
        if unit.status == DeliveryStatus.WAITING:
            name = default_name if chosen else (unit.item.provider or default_name)
        else:
            name = unit.provider or default_name
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
        units = list(qs.select_related("item").order_by("item_id", "unit_index"))
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
    # What the item was sold as, never the product as edited since: a re-check must send the same
    # SKU as the purchase it checks, and undelivered units buy what the customer paid for.
    item = unit.item
    return FulfillmentParams(
        reference=unit.reference,
        unit_key=unit.unit_key,
        sku=item.sku,
        recipient=item.recipient,
        order_id=unit.order_id,
        max_price=item.max_provider_price,
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
        # An order's units are checked one after another under one claim; by the time this one's
        # turn comes its claim may have expired and another run may have checked it. Renew the
        # claim on the row, still ours and still due, or leave the unit alone: a second check
        # of the same reference inside min_check_interval is what providers forbid.
        now = timezone.now()
        renewed = Delivery.objects.filter(
            Q(status=DeliveryStatus.SENDING) | Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now),
            pk=unit.pk,
            claim_token=claim_token,
            reference=unit.reference,
        ).update(claim_expires_at=now + timedelta(seconds=settings.FULFILLMENT_CLAIM_SECONDS))
        if not renewed:
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
