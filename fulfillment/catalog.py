"""Operator services for the Digiflazz account: the deposit balance and the prepaid price-list sync.

The balance and the time of the last price-list request are kept in ProviderAccount, so the
admin shows the last known deposit and the sync can respect Digiflazz's limit (the whole list
at most once per 5 minutes) across processes: the request time is claimed by a conditional
UPDATE before the call, so two concurrent syncs cannot both pull.

Products are matched by sku = buyer_sku_code. The sync only writes the provider_* fields of
existing products (staff own names and activation). A SKU the shop has never seen is created
inactive with a shop price of 0; once the list is applied, `price_list_applied` lets the money
side price every product from its new cost by the price rules (orders.services.pricing), and
staff activate the new ones; the admin refuses activation at price 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from fulfillment.models import ProviderAccount
from fulfillment.providers.digiflazz import DigiflazzClient, DigiflazzError, DigiflazzProvider
from fulfillment.signals import price_list_applied
from fulfillment.supplier_catalog import SupplierSku
from orders.models import Brand, Category, Product

logger = logging.getLogger(__name__)

PROVIDER = DigiflazzProvider.name
PRICE_LIST_MIN_INTERVAL = timedelta(minutes=5)
_BATCH = 500

ProgressCallback = Callable[[int, int], None]


class PriceListTooSoon(DigiflazzError):
    """The whole price list was requested less than 5 minutes ago; `wait` is the time left."""

    def __init__(self, *, wait: timedelta) -> None:
        self.wait = wait
        seconds = max(1, int(wait.total_seconds() + 0.999))
        minutes, rest = divmod(seconds, 60)
        left = f"{minutes} min {rest} s" if minutes else f"{rest} s"
        super().__init__(
            "Digiflazz allows the whole price list at most once per 5 minutes, and it was requested "
            f"less than 5 minutes ago. Try again in {left}.",
            rc="83",
        )


@dataclass
class SyncReport:
    total: int = 0  # items in the price list
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # price or availability changed
    disabled: list[str] = field(default_factory=list)  # became unavailable at the provider
    enabled: list[str] = field(default_factory=list)  # became available again
    unchanged: int = 0
    created_skus: list[str] = field(default_factory=list)  # SKU codes of the products created

    def summary(self) -> str:
        return _(
            "%(total)s SKUs in the price list: %(created)s created, %(updated)s updated (%(disabled)s disabled by "
            "the provider, %(enabled)s available again), %(unchanged)s unchanged."
        ) % {
            "total": self.total,
            "created": len(self.created),
            "updated": len(self.updated),
            "disabled": len(self.disabled),
            "enabled": len(self.enabled),
            "unchanged": self.unchanged,
        }


def provider_balance_refresh(*, client: DigiflazzClient | None = None) -> ProviderAccount:
    """Ask Digiflazz for the deposit and remember it. Raises DigiflazzError with the reason."""
    client = client or DigiflazzClient.from_settings()
    deposit = client.balance()
    account, _ = ProviderAccount.objects.update_or_create(
        provider=PROVIDER, defaults={"balance": deposit, "balance_checked_at": timezone.now()}
    )
    return account


def price_list_request_claim(*, now: datetime | None = None) -> None:
    """Reserve the right to pull the whole price list now, or raise PriceListTooSoon."""
    now = now or timezone.now()
    ProviderAccount.objects.get_or_create(provider=PROVIDER)
    claimed = (
        ProviderAccount.objects.filter(provider=PROVIDER)
        .filter(Q(price_list_requested_at__isnull=True) | Q(price_list_requested_at__lte=now - PRICE_LIST_MIN_INTERVAL))
        .update(price_list_requested_at=now)
    )
    if not claimed:
        last = ProviderAccount.objects.filter(provider=PROVIDER).values_list("price_list_requested_at", flat=True).get()
        raise PriceListTooSoon(wait=last + PRICE_LIST_MIN_INTERVAL - now)


def products_sync_price_list(
    *, client: DigiflazzClient | None = None, on_progress: ProgressCallback | None = None
) -> SyncReport:
    """Pull the prepaid price list (at most once per 5 minutes) and apply it to the products."""
    client = client or DigiflazzClient.from_settings()
    price_list_request_claim()
    try:
        items = client.price_list(cmd="prepaid")
    except DigiflazzError as exc:
        if exc.rc == "83":
            # Digiflazz counts its own window: start ours again from now.
            ProviderAccount.objects.filter(provider=PROVIDER).update(price_list_requested_at=timezone.now())
        raise
    report = products_apply_price_list(items=items, synced_at=timezone.now(), on_progress=on_progress)
    ProviderAccount.objects.filter(provider=PROVIDER).update(price_list_summary=report.summary()[:500])
    logger.info("Digiflazz price list applied: %s", report.summary())
    # The shop prices follow the new costs (orders.receivers reprices by the price rules).
    price_list_applied.send(sender=SyncReport, report=report, provider=PROVIDER)
    return report


def products_apply_price_list(
    *, items: list[dict[str, Any]], synced_at: datetime, on_progress: ProgressCallback | None = None
) -> SyncReport:
    """Create or update one Product per buyer_sku_code; products missing from the list become unavailable."""
    report = SyncReport()
    listed: dict[str, dict[str, Any]] = {}
    for item in items:
        sku = str(item.get("buyer_sku_code") or "").strip()
        if sku:
            listed[sku] = item
    report.total = len(listed)
    total = len(listed)

    with transaction.atomic():
        products = {product.sku: product for product in Product.objects.all()}
        to_create: list[Product] = []
        to_update: list[Product] = []
        for done, (sku, item) in enumerate(listed.items(), start=1):
            price = _price(item.get("price"))
            available = bool(item.get("buyer_product_status")) and bool(item.get("seller_product_status"))
            product = products.get(sku)
            if product is None:
                name = str(item.get("product_name") or sku).strip()[:200] or sku
                to_create.append(
                    Product(
                        name=name,
                        sku=sku[:100],
                        price_kopecks=0,
                        is_active=False,
                        provider_price=price,
                        provider_available=available,
                        provider_synced_at=synced_at,
                    )
                )
                report.created.append(name)
                report.created_skus.append(sku[:100])
            else:
                _apply(product, price=price, available=available, synced_at=synced_at, report=report)
                to_update.append(product)
            if on_progress and (done % _BATCH == 0 or done == total):
                on_progress(done, total)

        for product in products.values():
            if product.sku not in listed:
                _apply(product, price=product.provider_price, available=False, synced_at=synced_at, report=report)
                to_update.append(product)
        _group(to_create, listed)
        Product.objects.bulk_create(to_create, batch_size=_BATCH)
        Product.objects.bulk_update(
            to_update, ["provider_price", "provider_available", "provider_synced_at"], batch_size=_BATCH
        )
        supplier_skus_apply(listed=listed, synced_at=synced_at)
    return report


def _group(products: list[Product], listed: dict[str, dict[str, Any]]) -> None:
    """New products take the supplier's category and brand, as the catalogue's filters."""
    names = {"category": set(), "brand": set()}
    for product in products:
        for kind in names:
            name = str(listed[product.sku].get(kind) or "").strip()[:100]
            if name:
                names[kind].add(name)
    models = {"category": Category, "brand": Brand}
    found = {}
    for kind, wanted in names.items():
        model = models[kind]
        model.objects.bulk_create([model(name=name) for name in wanted], ignore_conflicts=True)
        found[kind] = dict(model.objects.filter(name__in=wanted).values_list("name", "pk"))
    for product in products:
        item = listed[product.sku]
        product.category_id = found["category"].get(str(item.get("category") or "").strip()[:100])
        product.brand_id = found["brand"].get(str(item.get("brand") or "").strip()[:100])


def _cut_off(value: Any) -> time | None:
    """Digiflazz's "H:M" (WIB); "0:0" to "0:0" is no window, left to sku_sellability."""
    try:
        hours, minutes = (int(part) for part in str(value).split(":")[:2])
        return time(hours, minutes)
    except (TypeError, ValueError):
        return None


def supplier_skus_apply(*, listed: dict[str, dict[str, Any]], synced_at: datetime) -> None:
    """Keep what the price list says of every SKU (SupplierSku): statuses, stock, cut-off, seller;
    the SKUs it no longer lists are marked so (never sellable until listed again)."""
    existing = {sku.code: sku for sku in SupplierSku.objects.filter(provider=PROVIDER)}
    fields = [
        "product_name", "category", "brand", "type", "seller_name", "price", "buyer_product_status",
        "seller_product_status", "unlimited_stock", "stock", "multi", "start_cut_off", "end_cut_off",
        "description", "in_price_list", "synced_at",
    ]  # fmt: skip
    create, update = [], []
    for code, item in listed.items():
        stock = _price(item.get("stock"))
        values = {
            "product_name": str(item.get("product_name") or "")[:200],
            "category": str(item.get("category") or "")[:100],
            "brand": str(item.get("brand") or "")[:100],
            "type": str(item.get("type") or "")[:100],
            "seller_name": str(item.get("seller_name") or "")[:200],
            "price": _price(item.get("price")),
            "buyer_product_status": item.get("buyer_product_status") is True,
            "seller_product_status": item.get("seller_product_status") is True,
            "unlimited_stock": item.get("unlimited_stock") is True,
            "stock": stock,
            "multi": item.get("multi") is not False,
            "start_cut_off": _cut_off(item.get("start_cut_off")),
            "end_cut_off": _cut_off(item.get("end_cut_off")),
            "description": str(item.get("desc") or "")[:2000],
            "in_price_list": True,
            "synced_at": synced_at,
        }
        sku = existing.get(code[:100])
        if sku is None:
            create.append(SupplierSku(provider=PROVIDER, code=code[:100], **values))
        else:
            for name, value in values.items():
                setattr(sku, name, value)
            update.append(sku)
    SupplierSku.objects.bulk_create(create, batch_size=_BATCH)
    SupplierSku.objects.bulk_update(update, fields, batch_size=_BATCH)
    listed_codes = {code[:100] for code in listed}
    SupplierSku.objects.filter(provider=PROVIDER, in_price_list=True).exclude(code__in=listed_codes).update(
        in_price_list=False, synced_at=synced_at
    )


def _apply(product: Product, *, price: int | None, available: bool, synced_at: datetime, report: SyncReport) -> None:
    was_available = product.provider_available
    if price == product.provider_price and available == was_available:
        report.unchanged += 1
    else:
        report.updated.append(product.name)
        if not available and was_available is not False:
            report.disabled.append(product.name)
        elif available and was_available is False:
            report.enabled.append(product.name)
    product.provider_price = price
    product.provider_available = available
    product.provider_synced_at = synced_at


def _price(value: Any) -> int | None:
    try:
        price = int(value)
    except (TypeError, ValueError):
        return None
    return price if price >= 0 else None
