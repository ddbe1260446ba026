"""What the delivery engine answers about units: the reads other packages may make.

The engine owns units (`Delivery`) and their purchases. Code above it (refunds, the order page,
the customer's status page) asks its questions here, so the rules behind an answer (which units
a halt holds back, when a failed purchase may have gone through after all) live in one place
beside the code that makes them true. Writes go through `fulfillment.services`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fulfillment.models import (
    OPEN_STATUSES,
    Delivery,
    DeliveryStatus,
    PauseKind,
    ProductPause,
    ProviderHalt,
    units_of_sku,
    units_through,
)
from fulfillment.providers.base import UNKNOWN_OUTCOME_CODE
from fulfillment.registry import get_provider_class
from fulfillment.supplier_catalog import Sellability, SupplierSku, sku_sellability
from orders.models import ProductSource

#: Delivery.last_code of a unit stopped by staff while a halt or pause held it: the engine never
#: sends it again by itself, and a refund takes it like any failed unit.
STOPPED_CODE = "stopped"


def unit_may_have_been_delivered(unit: Delivery) -> bool:
    """Whether the provider may have delivered this FAILED unit after all: its outcome is unknown,
    or its provider says its last answer needs checking before the unit is bought again."""
    if unit.last_code == UNKNOWN_OUTCOME_CODE:
        return True
    try:
        codes = get_provider_class(unit.provider).review_before_rebuy_codes if unit.provider else frozenset()
    except ImproperlyConfigured:
        return True  # a provider no longer registered: nobody can tell, so a person decides
    return unit.last_code in codes


def units_held_back() -> QuerySet[Delivery]:
    """The WAITING units that a provider halt or a product pause holds back (a pause repriced after
    a sync holds only the units whose max price is below the new price). The faults are a handful
    of rows, so this is a few indexed conditions, never a scan of the units."""
    halted = list(ProviderHalt.objects.values_list("provider", flat=True))
    paused = list(ProductPause.objects.values_list("provider", "sku", "kind", "price"))
    held = Q()
    for provider in halted:
        held |= units_through(provider)
    for provider, sku, kind, price in paused:
        holds = units_through(provider) & units_of_sku(sku)
        if kind == PauseKind.REPRICING and price is not None:
            holds &= Q(price_limit__lt=price)
        held |= holds
    if not held:
        return Delivery.objects.none()
    return Delivery.objects.alias(price_limit=Coalesce("max_price_override", "item__max_provider_price")).filter(
        held, status=DeliveryStatus.WAITING
    )


def held_units(*, order_id: int) -> QuerySet[Delivery]:
    """The WAITING units of an order that a provider halt or a product pause holds back."""
    return units_held_back().filter(order_id=order_id)


def units_awaiting_price_decision() -> QuerySet[Delivery]:
    """Units that a repricing pause holds after a sync: the supplier's new price is above what
    they may cost. Staff buy them at the new price or refund them."""
    held = Q()
    for provider, sku, price in ProductPause.objects.filter(kind=PauseKind.REPRICING, price__isnull=False).values_list(
        "provider", "sku", "price"
    ):
        held |= units_through(provider) & units_of_sku(sku) & Q(price_limit__lt=price)
    if not held:
        return Delivery.objects.none()
    return Delivery.objects.alias(price_limit=Coalesce("max_price_override", "item__max_provider_price")).filter(
        held, status=DeliveryStatus.WAITING
    )


def order_unit_counts(*, order_id: int) -> dict[str, int]:
    """How many units the order has: total, delivered, delivered_kept (delivered and no refund
    covers them), refunded, open (being delivered), unsettled (open, failed or being refunded)."""
    return Delivery.objects.filter(order_id=order_id).aggregate(
        total=Count("id"),
        delivered=Count("id", filter=Q(status=DeliveryStatus.DELIVERED)),
        delivered_kept=Count("id", filter=Q(status=DeliveryStatus.DELIVERED, refund__isnull=True)),
        refunded=Count("id", filter=Q(status=DeliveryStatus.REFUNDED)),
        open=Count("id", filter=Q(status__in=OPEN_STATUSES)),
        unsettled=Count("id", filter=Q(status__in=(*OPEN_STATUSES, DeliveryStatus.FAILED, DeliveryStatus.REFUNDING))),
    )


def order_units_value(*, order_id: int) -> tuple[int, int]:
    """(delivered, being delivered) value in kopecks of the order's units no refund covers."""
    values = Delivery.objects.filter(order_id=order_id, refund__isnull=True).aggregate(
        delivered=Sum("item__unit_price_kopecks", filter=Q(status=DeliveryStatus.DELIVERED)),
        delivering=Sum(
            "item__unit_price_kopecks", filter=Q(status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING))
        ),
    )
    return int(values["delivered"] or 0), int(values["delivering"] or 0)


def units_in_progress(*, order_id: int) -> QuerySet[Delivery]:
    """The order's units still being delivered (waiting, sending or pending)."""
    return Delivery.objects.filter(order_id=order_id, status__in=OPEN_STATUSES)


def failed_units_uncovered(*, order_id: int) -> QuerySet[Delivery]:
    """The order's FAILED units that no refund covers yet, in order (item, then unit)."""
    return Delivery.objects.filter(order_id=order_id, status=DeliveryStatus.FAILED, refund__isnull=True).order_by(
        "item_id", "unit_index"
    )


def undelivered_units_uncovered(*, order_id: int) -> QuerySet[Delivery]:
    """The order's units that were never delivered and may still never be (WAITING, held or FAILED),
    no refund covering them: what a refund made in the bank's portal can be bound to."""
    return Delivery.objects.filter(
        order_id=order_id, refund__isnull=True, status__in=(DeliveryStatus.WAITING, DeliveryStatus.FAILED)
    ).order_by("item_id", "unit_index")


def units_given_uncovered(*, order_id: int) -> QuerySet[Delivery]:
    """The order's units delivered, or perhaps being delivered, that no refund covers."""
    return Delivery.objects.filter(
        order_id=order_id,
        refund__isnull=True,
        status__in=(DeliveryStatus.DELIVERED, DeliveryStatus.SENDING, DeliveryStatus.PENDING),
    )


def units_uncovered(*, order_id: int) -> QuerySet[Delivery]:
    """Every unit of the order no refund covers, whatever its status."""
    return Delivery.objects.filter(order_id=order_id, refund__isnull=True)


def settled_with_refund_work(*, failed_uncovered: bool) -> Q:
    """A filter on orders (`Order.objects.filter(...)`): nothing is being delivered or refunded any
    more, and some unit is refunded, or (with `failed_uncovered`) FAILED with no refund yet: the
    orders whose units wait for the money side to close them or to decide a refund."""
    units = Delivery.objects.filter(order=OuterRef("pk"))
    wanted = Q(Exists(units.filter(status=DeliveryStatus.REFUNDED)))
    if failed_uncovered:
        wanted |= Q(Exists(units.filter(status=DeliveryStatus.FAILED, refund__isnull=True)))
    busy = Exists(units.filter(status__in=(*OPEN_STATUSES, DeliveryStatus.REFUNDING)))
    return wanted & ~Q(busy)


def products_sellability(
    *, products: Iterable[tuple[int, str]], provider: str | None = None, at: datetime | None = None
) -> dict[int, Sellability]:
    """Whether each product, given as (id, SKU code), can be sold now, and if not why and when it
    may be again. A product is sellable when some SKU of it is: its own SKU through `provider`
    (default FULFILLMENT_PROVIDER), or one of its backup SKUs (routing). A SKU is judged by the
    supplier's catalogue (sku_sellability: listed, switched on, in stock, outside the daily cut-off)
    and by a pause of it (its units wait: selling more would only add to them; a repricing pause
    once a sync has repriced the product holds only the units sold before). A SKU the supplier's
    catalogue does not hold (the mock provider, a product added by hand) is sellable.
    Three queries, whatever the number of products."""
    provider = provider or settings.FULFILLMENT_PROVIDER
    at = at or timezone.now()
    pairs = list(products)
    routes: dict[int, list[tuple[str, str]]] = {pk: [(provider, code)] for pk, code in pairs}
    for product_id, source_provider, code in ProductSource.objects.filter(product_id__in=list(routes)).values_list(
        "product_id", "provider", "sku"
    ):
        routes[product_id].append((source_provider or provider, code))
    wanted = {route for product_routes in routes.values() for route in product_routes}
    codes = {code for _provider, code in wanted}
    skus = {(sku.provider, sku.code): sku for sku in SupplierSku.objects.filter(code__in=codes)}
    # A pause lifts by itself at clears_at, or may at its next probe purchase; a repricing pause at
    # the next price-list sync (when is not known).
    pauses = ProductPause.objects.filter(sku__in=codes).exclude(kind=PauseKind.REPRICING, price__isnull=False)
    paused = {
        (pause_provider, sku): (kind, clears_at or next_probe_at)
        for pause_provider, sku, kind, clears_at, next_probe_at in pauses.values_list(
            "provider", "sku", "kind", "clears_at", "next_probe_at"
        )
    }
    verdicts = {}
    for pk, product_routes in routes.items():
        verdict = None
        for route in product_routes:
            if route in paused:
                kind, back_at = paused[route]
                reason = _("being repriced at the supplier's new price") if kind == PauseKind.REPRICING else None
                found = Sellability(False, reason or _("paused at the supplier"), back_at)
            elif route in skus:
                found = sku_sellability(skus[route], at=at)
            else:
                found = Sellability(True)
            if found.sellable:
                verdict = found
                break
            if verdict is None:
                verdict = found  # the product's own SKU says why, unless a backup says sooner
            elif found.again_at and (verdict.again_at is None or found.again_at < verdict.again_at):
                verdict = Sellability(False, verdict.reason, found.again_at)
        verdicts[pk] = verdict
    return verdicts
