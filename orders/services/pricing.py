"""Shop prices from supplier cost, the exchange rate and staff's price rules.

    cost (kopecks)  = supplier cost in rupiah x roubles per rupiah x 100, rounded up
    price (kopecks) = rounded up(cost x (1 + markup / 100) + fixed addition),
                      never below rounded up(cost + minimum margin)

by the most specific active rule: the product's own, its brand's, its category's, the default.
A product with a manual price sells at it, whatever the rules say. Every change of a shop price
is recorded (PriceChange). Orders already placed keep their prices: an order item copies the
price when it is made.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from fulfillment.models import PauseKind, ProductPause
from fulfillment.services import PauseSyncReport, product_pauses_after_sync
from orders.cbr import RateUnavailable, daily_rate_fetch
from orders.models import (
    ExchangeRate,
    OrderItem,
    PriceChange,
    PriceChangeReason,
    PriceRounding,
    PriceRule,
    Product,
    RateSource,
)

logger = logging.getLogger(__name__)

CURRENCY = "IDR"
_BATCH = 1000

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RateInUse:
    """The rate prices are made with now, or why there is none."""

    rub_per_unit: Decimal | None
    date: date | None
    source: str
    problem: str = ""

    @property
    def usable(self) -> bool:
        return self.rub_per_unit is not None and not self.problem


def exchange_rate_in_use(*, today: date | None = None) -> RateInUse:
    """PRICING_FIXED_RATE when set, else the newest stored rate if it is fresh enough."""
    if settings.PRICING_FIXED_RATE:
        return RateInUse(Decimal(settings.PRICING_FIXED_RATE), None, RateSource.FIXED)
    latest = ExchangeRate.objects.filter(currency=CURRENCY).order_by("-date", "-id").first()
    if latest is None:
        return RateInUse(
            None,
            None,
            "",
            "No exchange rate yet: the Central Bank's rate has not been fetched (or set PRICING_FIXED_RATE).",
        )
    today = today or timezone.localdate()
    age = (today - latest.date).days
    if age > settings.PRICING_MAX_RATE_AGE_DAYS:
        return RateInUse(
            latest.rub_per_unit,
            latest.date,
            latest.source,
            f"The newest exchange rate is for {latest.date:%d.%m.%Y}, {age} days old (more than "
            f"PRICING_MAX_RATE_AGE_DAYS={settings.PRICING_MAX_RATE_AGE_DAYS}): prices are kept until a fresh one.",
        )
    return RateInUse(latest.rub_per_unit, latest.date, latest.source)


def _round_up(kopecks: Decimal, rounding: str) -> int:
    roubles = math.ceil(kopecks / 100)
    if rounding == PriceRounding.TEN:
        roubles = math.ceil(roubles / 10) * 10
    elif rounding == PriceRounding.NINE:
        roubles += (9 - roubles % 10) % 10
    return roubles * 100


def cost_in_kopecks(cost: int, rate: Decimal) -> int:
    """The supplier cost of `cost` rupiah in kopecks at `rate` roubles per rupiah, rounded up."""
    return int((Decimal(cost) * rate * 100).to_integral_value(rounding=ROUND_CEILING))


def price_for(*, cost_kopecks: int, rule: PriceRule) -> int:
    """The shop price in kopecks a rule gives for a cost in kopecks (module docstring)."""
    marked = Decimal(cost_kopecks) * (1 + rule.markup_percent / 100) + rule.fixed_kopecks
    price = _round_up(max(marked, Decimal(0)), rule.rounding)
    floor = _round_up(Decimal(cost_kopecks + rule.min_margin_kopecks), rule.rounding)
    return max(price, floor)


class RuleBook:
    """The active rules, looked up most specific first."""

    def __init__(self, rules: Iterable[PriceRule]) -> None:
        self.by_product: dict[int, PriceRule] = {}
        self.by_brand: dict[int, PriceRule] = {}
        self.by_category: dict[int, PriceRule] = {}
        self.default: PriceRule | None = None
        self.rules: list[PriceRule] = []
        for rule in rules:
            if not rule.is_active:
                continue
            self.rules.append(rule)
            if rule.product_id:
                self.by_product[rule.product_id] = rule
            elif rule.brand_id:
                self.by_brand[rule.brand_id] = rule
            elif rule.category_id:
                self.by_category[rule.category_id] = rule
            else:
                self.default = rule

    @classmethod
    def load(cls) -> RuleBook:
        return cls(PriceRule.objects.filter(is_active=True).select_related("product", "brand", "category"))

    def rule_for(self, *, product_id: int, brand_id: int | None, category_id: int | None) -> PriceRule | None:
        return (
            self.by_product.get(product_id)
            or (self.by_brand.get(brand_id) if brand_id else None)
            or (self.by_category.get(category_id) if category_id else None)
            or self.default
        )


@dataclass
class RepriceReport:
    checked: int = 0
    changed: int = 0
    no_cost: int = 0  # no supplier price known yet
    no_rule: int = 0  # no rule matches and no manual price
    problem: str = ""  # why nothing was repriced (no usable rate)
    changes: list[int] = field(default_factory=list)  # ids of the products whose price changed

    def summary(self) -> str:
        if self.problem:
            return self.problem
        return (
            f"{self.checked} products checked, {self.changed} prices changed, {self.no_cost} without a supplier "
            f"price, {self.no_rule} without a matching rule."
        )


def products_reprice(
    *,
    reason: str,
    changed_by=None,
    product_ids: Iterable[int] | None = None,
    progress: Progress | None = None,
) -> RepriceReport:
    """Price every product (or `product_ids`) by its rule at the rate in use, in one pass and in
    bulk: a product whose price, cost or rate changes is updated and, when its price changed, a
    PriceChange says from what. Without a usable rate nothing changes and the report says why."""
    report = RepriceReport()
    rate = exchange_rate_in_use()
    if not rate.usable:
        report.problem = rate.problem
        logger.warning("Prices not changed: %s", rate.problem)
        return report
    book = RuleBook.load()
    described = {rule.pk: rule.describe() for rule in book.rules}
    now = timezone.now()
    rows = Product.objects.order_by("pk").values_list(
        "pk", "price_kopecks", "provider_price", "manual_price_kopecks", "brand_id", "category_id", "cost_kopecks"
    )
    if product_ids is not None:
        rows = rows.filter(pk__in=list(product_ids))
    total = rows.count()
    updates: list[Product] = []
    changes: list[PriceChange] = []
    for pk, old, cost, manual, brand_id, category_id, old_cost in rows.iterator(chunk_size=_BATCH):
        report.checked += 1
        cost_kopecks = cost_in_kopecks(cost, rate.rub_per_unit) if cost is not None else None
        rule = None
        if manual is not None:
            new, why = manual, PriceChangeReason.MANUAL
        elif cost_kopecks is None:
            report.no_cost += 1
            new = old
        else:
            rule = book.rule_for(product_id=pk, brand_id=brand_id, category_id=category_id)
            if rule is None:
                report.no_rule += 1
                new = old
            else:
                new, why = price_for(cost_kopecks=cost_kopecks, rule=rule), reason
        if new != old or cost_kopecks != old_cost:
            updates.append(
                Product(
                    pk=pk, price_kopecks=new, cost_kopecks=cost_kopecks, priced_rate=rate.rub_per_unit, priced_at=now
                )
            )
        if new != old:
            report.changed += 1
            report.changes.append(pk)
            changes.append(
                PriceChange(
                    product_id=pk,
                    old_price_kopecks=old,
                    new_price_kopecks=new,
                    cost=cost,
                    cost_kopecks=cost_kopecks,
                    rate=rate.rub_per_unit,
                    rule=rule,
                    rule_description=described[rule.pk] if rule else "",
                    reason=why,
                    changed_by=changed_by,
                )
            )
        if len(updates) >= _BATCH:
            _write(updates, changes)
            updates, changes = [], []
            if progress:
                progress(report.checked, total)
    _write(updates, changes)
    if progress:
        progress(report.checked, total)
    logger.info("Repriced (%s): %s", reason, report.summary())
    return report


def _write(updates: list[Product], changes: list[PriceChange]) -> None:
    with transaction.atomic():
        if updates:
            _update_prices(updates)
        if changes:
            PriceChange.objects.bulk_create(changes, batch_size=_BATCH)


def _update_prices(rows: list[Product]) -> None:
    """One UPDATE for the batch: a CASE per varying column, the rate and time shared by the pass.
    Written out rather than QuerySet.bulk_update, whose per-row expressions cost ~0.4 ms of Python
    each (bench/reprice.py); every value is a parameter, adapted by the column's field."""
    meta, quote = Product._meta, connection.ops.quote_name
    params: list[object] = []
    assignments = []
    for name in ("price_kopecks", "cost_kopecks"):
        field = meta.get_field(name)
        whens = []
        for row in rows:
            whens.append("WHEN %s THEN %s")
            params += [row.pk, field.get_db_prep_save(getattr(row, name), connection)]
        cast = field.db_type(connection)
        assignments.append(
            f"{quote(field.column)} = CAST(CASE {quote(meta.pk.column)} {' '.join(whens)} END AS {cast})"
        )
    for name in ("priced_rate", "priced_at"):
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(getattr(rows[0], name), connection))
    # A price change is a change of the product: the catalogue's ETag follows updated_at.
    updated = meta.get_field("updated_at")
    assignments.append(f"{quote(updated.column)} = %s")
    params.append(updated.get_db_prep_save(rows[0].priced_at, connection))
    params += [row.pk for row in rows]
    marks = ", ".join(["%s"] * len(rows))
    sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} WHERE {quote(meta.pk.column)} IN ({marks})"  # noqa: S608 - names from the model's meta, values parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def exchange_rate_refresh(*, fetch: Callable[[], object] | None = None) -> tuple[ExchangeRate | None, RepriceReport]:
    """Fetch the Central Bank's rupiah rate; store it when it is new, and then reprice. A fixed
    rate (PRICING_FIXED_RATE) fetches nothing. Raises RateUnavailable when the bank cannot be read."""
    if settings.PRICING_FIXED_RATE:
        return None, RepriceReport(problem="PRICING_FIXED_RATE is set: the Central Bank's rate is not used.")
    daily = (fetch or (lambda: daily_rate_fetch(currency=CURRENCY)))()
    stored, created = ExchangeRate.objects.get_or_create(
        currency=daily.currency, date=daily.date, source=RateSource.CBR, defaults={"rub_per_unit": daily.rub_per_unit}
    )
    if not created and stored.rub_per_unit == daily.rub_per_unit:
        return stored, RepriceReport()
    if not created:
        ExchangeRate.objects.filter(pk=stored.pk).update(rub_per_unit=daily.rub_per_unit)
        stored.refresh_from_db()
    logger.info("Exchange rate for %s: %s roubles per rupiah", daily.date, daily.rub_per_unit)
    report = products_reprice(reason=PriceChangeReason.RATE)
    # A repricing pause that the last sync left in place because the rate was too old may go on now.
    for provider in set(ProductPause.objects.filter(kind=PauseKind.REPRICING).values_list("provider", flat=True)):
        products_resume_repriced(provider=provider)
    return stored, report


def exchange_rate_set_fixed(*, rub_per_unit: Decimal, day: date | None = None) -> ExchangeRate:
    """Store a rate set by staff (or by the demo data) for `day` (today), as the rate in use."""
    if not rub_per_unit.is_finite() or rub_per_unit <= 0:
        raise ValueError(f"A rate must be a positive number of roubles per rupiah, not {rub_per_unit}.")
    day = day or timezone.localdate()
    rate, _ = ExchangeRate.objects.update_or_create(
        currency=CURRENCY, date=day, source=RateSource.FIXED, defaults={"rub_per_unit": rub_per_unit}
    )
    return rate


def product_price_after_staff_edit(*, product_id: int, old_price: int | None, changed_by=None) -> None:
    """After staff saved a product: a manual price is its shop price (recorded as a change); without
    one, the rules price it (when a rate and a supplier cost allow)."""
    product = Product.objects.get(pk=product_id)
    if product.manual_price_kopecks is None:
        products_reprice(reason=PriceChangeReason.RULE, changed_by=changed_by, product_ids=[product_id])
        return
    if product.price_kopecks != product.manual_price_kopecks:
        Product.objects.filter(pk=product_id).update(
            price_kopecks=product.manual_price_kopecks, updated_at=timezone.now()
        )
    if old_price is not None and old_price != product.manual_price_kopecks:
        PriceChange.objects.create(
            product_id=product_id,
            old_price_kopecks=old_price,
            new_price_kopecks=product.manual_price_kopecks,
            cost=product.provider_price,
            cost_kopecks=product.cost_kopecks,
            rate=product.priced_rate,
            reason=PriceChangeReason.MANUAL,
            changed_by=changed_by,
        )


def products_resume_repriced(*, provider: str) -> PauseSyncReport:
    """After the catalogue was repriced: move on the repricing pauses of `provider` (the supplier
    refused a purchase for price). Each product is judged by the max price a sale made now would
    send: a product still priced below the supplier's new price stays paused, and says why on the
    dashboard (the rate too old to reprice, a manual price, a staff cap)."""
    skus = ProductPause.objects.filter(provider=provider, kind=PauseKind.REPRICING).values_list("sku", flat=True)
    products = Product.objects.filter(sku__in=list(skus))
    sold_at_most = {product.sku: OrderItem.sold_as(product)["max_provider_price"] for product in products}
    return product_pauses_after_sync(provider=provider, sold_at_most=sold_at_most)


def products_activate_priced(*, skus: Iterable[str]) -> int:
    """Put on sale the products of `skus` (new from a sync) that a rule priced above 0; the rest
    wait for staff. Returns how many went on sale (SYNC_AUTO_ACTIVATE)."""
    activated = Product.objects.filter(
        sku__in=list(skus), is_active=False, price_kopecks__gt=0, cost_kopecks__isnull=False
    ).update(is_active=True, updated_at=timezone.now())
    if activated:
        logger.info("%d new products put on sale, priced by the rules (SYNC_AUTO_ACTIVATE)", activated)
    return activated


def products_below_margin() -> list[tuple[int, str, int, int]]:
    """Products on sale at a manual price below their cost plus the minimum margin of the rule that
    would price them (the rules never price below it): (id, name, price, floor) each. Reads the
    products with a manual price and a known cost, and the active rules: two queries."""
    rows = list(
        Product.objects.filter(is_active=True, manual_price_kopecks__isnull=False, cost_kopecks__isnull=False)
        .order_by("name", "id")
        .values_list("pk", "name", "price_kopecks", "cost_kopecks", "brand_id", "category_id")
    )
    if not rows:
        return []
    book = RuleBook.load()
    below = []
    for pk, name, price, cost, brand_id, category_id in rows:
        rule = book.rule_for(product_id=pk, brand_id=brand_id, category_id=category_id)
        floor = cost + (rule.min_margin_kopecks if rule else 0)
        if price < floor:
            below.append((pk, name, price, floor))
    return below


__all__ = [
    "RateInUse",
    "RateUnavailable",
    "RepriceReport",
    "RuleBook",
    "cost_in_kopecks",
    "exchange_rate_in_use",
    "exchange_rate_refresh",
    "exchange_rate_set_fixed",
    "price_for",
    "products_activate_priced",
    "products_below_margin",
    "product_price_after_staff_edit",
    "products_reprice",
]
