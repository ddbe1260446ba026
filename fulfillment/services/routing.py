"""Supplier routing and repricing pauses.

A product is sold through an ordered list of supplier SKUs: its own SKU (the one its order items
were sold with) first, then its backup SKUs (`orders.ProductSource`, by position). A unit waiting
to be bought goes through the first of them that can be bought now: no halt of its provider, no
pause of the SKU that holds this unit, and (when the supplier's catalogue knows the SKU) listed,
switched on, in stock, outside its cut-off window and not priced above what the unit may cost.
When the catalogue rules every SKU out, the first one no fault holds is tried anyway: the
provider's answer, not a catalogue that may be stale, then decides.

Only a WAITING unit moves to another SKU: its current reference was never sent, or its last
purchase got a final failure answer. A unit whose purchase is SENDING or PENDING (outcome
unknown) keeps its SKU and reference until that outcome is known: one unit, at most one open
purchase, whatever the SKU.

A purchase refused for price pauses its SKU for repricing (halts.product_pause, kind REPRICING).
After the next price-list sync has priced the products again, `product_pauses_after_sync` gives
each such pause the supplier's new price: units whose max price covers it are due at once (new
orders, sold at the new cost), the others wait for staff, who buy them at the new price
(`units_buy_at_new_price`) or refund them; a pause that holds no unit any more is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus, PauseKind, ProductPause, units_of_sku, units_through
from fulfillment.services.queueing import order_fulfillment_queue
from fulfillment.supplier_catalog import SupplierSku, sku_sellability
from orders.models import ProductSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """One way to buy a unit: a SKU at a provider."""

    provider: str
    sku: str


def unit_max_price(unit: Delivery) -> int | None:
    """The highest supplier price a purchase of `unit` may cost (sent as max_price): what staff
    agreed to after a price rise, else what the sale was priced at. None: no cap."""
    if unit.max_price_override is not None:
        return unit.max_price_override
    return unit.item.max_provider_price


def unit_sku(unit: Delivery) -> str:
    """The SKU the unit's current purchase is (or will be) made with."""
    return unit.sku or unit.item.sku


def pause_holds(pause: ProductPause, *, max_price: int | None) -> bool:
    """Whether `pause` holds back a purchase that may cost at most `max_price` (None: no cap)."""
    if pause.kind != PauseKind.REPRICING or pause.price is None:
        return True
    return max_price is not None and pause.price > max_price


def pauses_holding(*, provider: str, sku: str, max_price: int | None):
    """The pauses of `sku` at `provider` that hold back a purchase of at most `max_price`, as a
    queryset (the last gate before a purchase asks the database, not a run's copy)."""
    passes = Q(kind=PauseKind.REPRICING, price__isnull=False)
    if max_price is not None:
        passes &= Q(price__lte=max_price)
    return ProductPause.objects.filter(provider=provider, sku=sku).exclude(passes)


def _held_by_price(*, provider: str, sku: str, price: int):
    """The WAITING units that a repricing pause with the supplier's new `price` holds back."""
    return (
        Delivery.objects.filter(units_through(provider), units_of_sku(sku), status=DeliveryStatus.WAITING)
        .alias(limit=Coalesce("max_price_override", "item__max_provider_price"))
        .filter(limit__lt=price)
    )


@dataclass
class RouteBook:
    """The routes of the products of one run's units, and what the supplier catalogue says of their
    SKUs: read once per run (one statement, a second only when some product has backup SKUs)."""

    default_provider: str
    backups: dict[int, list[Route]] = field(default_factory=dict)
    catalogue: dict[tuple[str, str], SupplierSku] = field(default_factory=dict)

    @classmethod
    def load(cls, units: Iterable[Delivery], *, default_provider: str) -> RouteBook:
        book = cls(default_provider=default_provider)
        product_ids = {unit.item.product_id for unit in units}
        if not product_ids:
            return book
        rows = ProductSource.objects.filter(product_id__in=product_ids).values_list("product_id", "provider", "sku")
        for product_id, provider, sku in rows:
            book.backups.setdefault(product_id, []).append(Route(provider or default_provider, sku))
        if book.backups:
            codes = {route.sku for routes in book.backups.values() for route in routes}
            codes |= {unit.item.sku for unit in units if unit.item.product_id in book.backups}
            for sku in SupplierSku.objects.filter(code__in=codes):
                book.catalogue[(sku.provider, sku.code)] = sku
        return book

    def skus(self, units: Iterable[Delivery]) -> set[str]:
        """Every SKU the units may be bought through (for reading the pauses of all of them)."""
        found = set()
        for unit in units:
            found.add(unit_sku(unit))
            found.add(unit.item.sku)
            found.update(route.sku for route in self.backups.get(unit.item.product_id, ()))
        return found

    def routes(self, unit: Delivery, *, item_provider: str) -> list[Route]:
        """The unit's routes in order: its item's SKU, then the product's backup SKUs."""
        first = Route(item_provider, unit.item.sku)
        return [first, *(route for route in self.backups.get(unit.item.product_id, ()) if route != first)]

    def current(self, unit: Delivery, *, item_provider: str) -> Route:
        if unit.sku:
            return Route(unit.provider or item_provider, unit.sku)
        return Route(item_provider, unit.item.sku)

    def buyable(self, route: Route, *, max_price: int | None, at: datetime) -> bool:
        """What the supplier catalogue says of buying through `route` now (unknown SKU: yes)."""
        sku = self.catalogue.get((route.provider, route.sku))
        if sku is None:
            return True
        if max_price is not None and sku.price is not None and sku.price > max_price:
            return False
        return sku_sellability(sku, at=at).sellable

    def choose(self, unit: Delivery, *, item_provider: str, held: callable) -> Route:
        """The route a WAITING unit is bought through now. `held(route)`: whether a halt or pause
        holds the unit back on it."""
        current = self.current(unit, item_provider=item_provider)
        routes = self.routes(unit, item_provider=item_provider)
        if len(routes) == 1:
            return current
        now = timezone.now()
        limit = unit_max_price(unit)
        free = [route for route in routes if not held(route)]
        for route in free:
            if self.buyable(route, max_price=limit, at=now):
                return route
        return free[0] if free else current


def unit_route_switch(*, unit: Delivery, route: Route, item_provider: str, claim_token: str) -> bool:
    """Move a WAITING unit, claimed by `claim_token`, to `route`. Its reference was never sent (or
    its last purchase failed for good), so it is bought once whichever SKU it goes through."""
    first = route.sku == unit.item.sku and route.provider == item_provider
    values = {"sku": "" if first else route.sku, "provider": "" if first else route.provider}
    moved = Delivery.objects.filter(
        pk=unit.pk, claim_token=claim_token, status=DeliveryStatus.WAITING, reference=unit.reference
    ).update(**values, last_message=f"Routed to {route.sku} at {route.provider}.")
    if moved:
        logger.info("Unit %s routed to %s at %s", unit.unit_key, route.sku, route.provider)
        unit.sku, unit.provider = values["sku"], values["provider"]
    return bool(moved)


@dataclass
class PauseSyncReport:
    repriced: list[str] = field(default_factory=list)  # SKUs whose pause got the new price
    still_paused: list[str] = field(default_factory=list)  # not listed, or the shop price was not raised
    lifted: list[str] = field(default_factory=list)  # held no unit any more: deleted
    units_released: int = 0  # units whose max price covers the new price: due at once
    units_held: int = 0  # units that wait for staff: buy at the new price or refund


def product_pauses_after_sync(*, provider: str, sold_at_most: Mapping[str, int | None]) -> PauseSyncReport:
    """Move the repricing pauses of `provider` on after a price-list sync repriced the products.

    `sold_at_most`: for each SKU that is some product's own, the max price a sale made now would
    send (None: no cap). A pause whose SKU the price list does not price, or whose product would
    still sell below the new price (the rate is stale, a manual price, a staff cap), stays as it is:
    the product is not sold and nothing is bought. Otherwise it takes the supplier's new price."""
    report = PauseSyncReport()
    now = timezone.now()
    for pause in ProductPause.objects.filter(provider=provider, kind=PauseKind.REPRICING):
        listed = SupplierSku.objects.filter(provider=provider, code=pause.sku, in_price_list=True).first()
        price = listed.price if listed is not None else None
        at_most = sold_at_most.get(pause.sku)
        if price is None or (at_most is not None and at_most < price):
            report.still_paused.append(pause.sku)
            continue
        ProductPause.objects.filter(pk=pause.pk).update(price=price, repriced_at=now, last_seen_at=now)
        pause.price = price
        report.repriced.append(pause.sku)
        report.units_released += _release_covered(pause)
        held = _held_by_price(provider=provider, sku=pause.sku, price=price).count()
        report.units_held += held
        if not held and ProductPause.objects.filter(pk=pause.pk, kind=PauseKind.REPRICING).delete()[0]:
            report.lifted.append(pause.sku)
    if report.repriced or report.still_paused:
        logger.warning(
            "Repricing pauses of %s after the sync: %d repriced (%d units released, %d wait for staff), %d lifted, "
            "%d still paused",
            provider,
            len(report.repriced),
            report.units_released,
            report.units_held,
            len(report.lifted),
            len(report.still_paused),
        )
    return report


def _release_covered(pause: ProductPause) -> int:
    """Make the WAITING units the repriced pause no longer holds due at once; returns how many."""
    waiting = Delivery.objects.filter(
        units_through(pause.provider), units_of_sku(pause.sku), status=DeliveryStatus.WAITING
    )
    held = _held_by_price(provider=pause.provider, sku=pause.sku, price=pause.price)
    covered = waiting.exclude(pk__in=held.values("pk"))
    orders = set(covered.values_list("order_id", flat=True))
    released = covered.update(next_attempt_at=timezone.now())
    with transaction.atomic():
        for order_id in orders:
            order_fulfillment_queue(order_id=order_id)
    return released


@dataclass
class PriceDecision:
    bought: int = 0  # units that will be bought at the new price
    skipped: list[str] = field(default_factory=list)  # "<unit key> (<status>)" of units no rise holds


def units_buy_at_new_price(*, unit_ids: Iterable[int], decided_by: str) -> PriceDecision:
    """Staff's decision for units a repricing pause holds after a sync: buy them at the supplier's
    new price. Each unit may then cost up to that price (`max_price_override`), and is due at once.
    Units no repriced pause holds are left alone and said so."""
    decision = PriceDecision()
    now = timezone.now()
    units = Delivery.objects.filter(pk__in=list(unit_ids)).select_related("item")
    touched = {}
    for unit in units:
        provider = unit.provider or unit.item.provider or settings.FULFILLMENT_PROVIDER
        pause = ProductPause.objects.filter(
            provider=provider, sku=unit_sku(unit), kind=PauseKind.REPRICING, price__isnull=False
        ).first()
        holds = pause is not None and pause_holds(pause, max_price=unit_max_price(unit))
        if unit.status != DeliveryStatus.WAITING or not holds:
            decision.skipped.append(f"{unit.unit_key} ({unit.get_status_display()})")
            continue
        with transaction.atomic():
            changed = Delivery.objects.filter(pk=unit.pk, status=DeliveryStatus.WAITING).update(
                max_price_override=pause.price,
                next_attempt_at=now,
                last_message=f"{decided_by} agreed to buy at the supplier's new price ({pause.price}).",
            )
            if changed:
                order_fulfillment_queue(order_id=unit.order_id)
        decision.bought += changed
        touched[pause.pk] = pause
    for pause in touched.values():
        if not _held_by_price(provider=pause.provider, sku=pause.sku, price=pause.price).exists():
            ProductPause.objects.filter(pk=pause.pk, kind=PauseKind.REPRICING).delete()
    if decision.bought:
        logger.warning("%s agreed to buy %d unit(s) at the supplier's new price", decided_by, decision.bought)
    return decision
