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
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fulfillment.models import OPEN_STATUSES, Delivery, DeliveryStatus, ProductPause, ProviderHalt
from fulfillment.providers.base import UNKNOWN_OUTCOME_CODE
from fulfillment.registry import get_provider_class
from fulfillment.supplier_catalog import Sellability, SupplierSku, sku_sellability

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


def held_units(*, order_id: int) -> QuerySet[Delivery]:
    """The WAITING units of an order that a provider halt or a product pause holds back."""
    halted = list(ProviderHalt.objects.values_list("provider", flat=True))
    paused = list(ProductPause.objects.values_list("provider", "sku"))
    default = settings.FULFILLMENT_PROVIDER
    held = Q()
    for provider in halted:
        held |= Q(provider=provider) | Q(provider="", item__provider=provider)
        if provider == default:
            held |= Q(provider="", item__provider="")
    for provider, sku in paused:
        through = Q(provider=provider) | Q(provider="", item__provider=provider)
        if provider == default:
            through |= Q(provider="", item__provider="")
        held |= through & Q(item__sku=sku)
    if not held:
        return Delivery.objects.none()
    return Delivery.objects.filter(held, order_id=order_id, status=DeliveryStatus.WAITING)


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
    """Whether each product, given as (id, SKU code), can be sold now through `provider` (default
    FULFILLMENT_PROVIDER), and if not why and when it may be again. Judged by its SKU in the
    supplier's catalogue (sku_sellability: listed, switched on, in stock, outside the daily cut-off)
    and by a pause of that SKU (its units wait: selling more would only add to them). A SKU the
    supplier's catalogue does not hold (the mock provider, a product added by hand) is sellable.
    Two queries, whatever the number of products."""
    provider = provider or settings.FULFILLMENT_PROVIDER
    at = at or timezone.now()
    pairs = list(products)
    codes = {code for _pk, code in pairs}
    skus = {sku.code: sku for sku in SupplierSku.objects.filter(provider=provider, code__in=codes)}
    # A pause lifts by itself at clears_at, or may at its next probe purchase.
    back_at = {
        sku: clears_at or next_probe_at
        for sku, clears_at, next_probe_at in ProductPause.objects.filter(provider=provider, sku__in=codes).values_list(
            "sku", "clears_at", "next_probe_at"
        )
    }
    verdicts = {}
    for pk, code in pairs:
        if code in back_at:
            verdicts[pk] = Sellability(False, _("paused at the supplier"), back_at[code])
        elif code in skus:
            verdicts[pk] = sku_sellability(skus[code], at=at)
        else:
            verdicts[pk] = Sellability(True)
    return verdicts
