"""When a supplier SKU can be bought (status, stock, the WIB cut-off window), what the sync keeps of
it, and what the catalogue and checkout make of it."""

import io
from datetime import datetime, time, timedelta

import pytest

from fulfillment.models import ProductPause
from fulfillment.supplier_catalog import WIB, SupplierSku, in_cut_off, sku_sellability


def wib(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 3, hour, minute, tzinfo=WIB)


def sku(**fields) -> SupplierSku:
    base = dict(
        provider="digiflazz",
        code="xld10",
        buyer_product_status=True,
        seller_product_status=True,
        unlimited_stock=True,
        in_price_list=True,
    )
    base.update(fields)
    return SupplierSku(**base)


@pytest.mark.parametrize(
    ("start", "end", "at", "ends"),
    [
        (time(23, 0), time(0, 30), wib(23, 30), datetime(2026, 12, 4, 0, 30, tzinfo=WIB)),  # wraps, before midnight
        (time(23, 0), time(0, 30), wib(0, 10), datetime(2026, 12, 3, 0, 30, tzinfo=WIB)),  # wraps, after midnight
        (time(23, 0), time(0, 30), wib(12, 0), None),
        (time(1, 0), time(2, 0), wib(1, 0), datetime(2026, 12, 3, 2, 0, tzinfo=WIB)),  # start is inside
        (time(1, 0), time(2, 0), wib(2, 0), None),  # end is outside
        (time(0, 0), time(0, 0), wib(0, 0), None),  # Digiflazz's "no window"
        (None, time(2, 0), wib(1, 0), None),
    ],
)
def test_cut_off_window(start, end, at, ends):
    assert in_cut_off(start=start, end=end, at=at) == ends


def test_cut_off_is_judged_in_wib_whatever_the_zone_of_the_instant():
    moscow_evening = wib(23, 30).astimezone(datetime.now().astimezone().tzinfo)
    assert in_cut_off(start=time(23, 0), end=time(0, 30), at=moscow_evening) is not None


def test_sellable_when_active_in_stock_and_outside_cut_off():
    assert sku_sellability(sku(), at=wib(12)).sellable


@pytest.mark.parametrize(
    "fields",
    [
        {"in_price_list": False},
        {"buyer_product_status": False},
        {"seller_product_status": False},
        {"unlimited_stock": False, "stock": 0},
        {"unlimited_stock": False, "stock": None},
    ],
)
def test_not_sellable_without_a_time_to_come_back(fields):
    verdict = sku_sellability(sku(**fields), at=wib(12))
    assert not verdict.sellable and verdict.reason and verdict.again_at is None


def test_limited_stock_left_is_sellable():
    assert sku_sellability(sku(unlimited_stock=False, stock=3), at=wib(12)).sellable


def test_in_cut_off_says_when_it_ends():
    verdict = sku_sellability(sku(start_cut_off=time(11, 0), end_cut_off=time(13, 0)), at=wib(12))
    assert not verdict.sellable
    assert verdict.again_at == wib(13)


# --- the sync keeps the supplier's catalogue -----------------------------------------------------------


def price_item(code: str, **fields) -> dict:
    item = {
        "product_name": f"Product {code}",
        "category": "Pulsa",
        "brand": "XL",
        "type": "Umum",
        "seller_name": "Seller A",
        "price": 10000,
        "buyer_sku_code": code,
        "buyer_product_status": True,
        "seller_product_status": True,
        "unlimited_stock": False,
        "stock": 15,
        "multi": True,
        "start_cut_off": "23:45",
        "end_cut_off": "0:15",
        "desc": "-",
    }
    item.update(fields)
    return item


@pytest.mark.django_db
def test_the_sync_keeps_every_skus_status_stock_and_cut_off(fake_digiflazz):
    from django.core.management import call_command

    from orders.models import Product

    SupplierSku.objects.create(provider="digiflazz", code="gone5", in_price_list=True)
    fake_digiflazz.price_list = [price_item("xld10"), price_item("tsel5", category="Pulsa", brand="Telkomsel")]

    call_command("sync_digiflazz_products", stdout=io.StringIO())

    kept = SupplierSku.objects.get(code="xld10")
    assert (kept.category, kept.brand, kept.type, kept.seller_name, kept.price) == (
        "Pulsa",
        "XL",
        "Umum",
        "Seller A",
        10000,
    )
    assert (kept.unlimited_stock, kept.stock, kept.buyer_product_status, kept.seller_product_status) == (
        False,
        15,
        True,
        True,
    )
    assert (kept.start_cut_off, kept.end_cut_off) == (time(23, 45), time(0, 15))
    assert SupplierSku.objects.get(code="gone5").in_price_list is False
    # New products take the supplier's category and brand, for the catalogue's filters.
    new = Product.objects.select_related("category", "brand").get(sku="tsel5")
    assert (new.category.name, new.brand.name) == ("Pulsa", "Telkomsel")


@pytest.mark.django_db
def test_the_catalogue_and_checkout_sell_only_what_can_be_delivered(client, product_factory, settings):
    settings.FULFILLMENT_PROVIDER = "digiflazz"
    settings.DIGIFLAZZ_USERNAME, settings.DIGIFLAZZ_API_KEY = "shop", "key"
    open_sku = product_factory(name="A open", sku="open1")
    cut_off = product_factory(name="B cut off", sku="cut1")
    empty = product_factory(name="C empty", sku="empty1")
    paused = product_factory(name="D paused", sku="paused1")
    SupplierSku.objects.create(provider="digiflazz", code="open1", **_ON)
    now_wib = datetime.now(WIB)
    start = (now_wib - timedelta(minutes=5)).time().replace(second=0, microsecond=0)
    end = (now_wib + timedelta(minutes=30)).time().replace(second=0, microsecond=0)
    SupplierSku.objects.create(provider="digiflazz", code="cut1", start_cut_off=start, end_cut_off=end, **_ON)
    SupplierSku.objects.create(provider="digiflazz", code="empty1", **{**_ON, "unlimited_stock": False, "stock": 0})
    ProductPause.objects.create(provider="digiflazz", sku="paused1", reason="out of stock at the seller")

    listed = {row["name"]: row for row in client.get("/api/products").json()}

    assert listed["A open"]["sellable"] is True and listed["A open"]["sellable_again_at"] is None
    assert listed["B cut off"]["sellable"] is False
    again = datetime.fromisoformat(listed["B cut off"]["sellable_again_at"])
    assert timedelta(minutes=20) < again - datetime.now(WIB) <= timedelta(minutes=31)
    assert listed["C empty"]["sellable"] is False and listed["C empty"]["sellable_again_at"] is None
    assert listed["D paused"]["sellable"] is False

    body = {
        "email": "a@example.com",
        "items": [
            {"product": product.pk, "quantity": 1, "recipient": "087800001230"}
            for product in (open_sku, cut_off, empty, paused)
        ],
    }
    refused = client.post("/api/orders", body, content_type="application/json")
    assert refused.status_code == 422
    errors = {error["field"]: error for error in refused.json()["errors"]}
    assert set(errors) == {"/items/1/product", "/items/2/product", "/items/3/product"}
    assert {error["code"] for error in errors.values()} == {"not_sellable"}
    assert (
        "cut-off" in errors["/items/1/product"]["message"]
        and "expected back at" in errors["/items/1/product"]["message"]
    )
    assert "out of stock" in errors["/items/2/product"]["message"]


_ON = {"buyer_product_status": True, "seller_product_status": True, "unlimited_stock": True, "in_price_list": True}


@pytest.mark.django_db
@pytest.mark.parametrize("auto", [True, False])
def test_new_skus_priced_by_a_rule_go_on_sale_only_with_sync_auto_activate(settings, auto):
    from decimal import Decimal

    from fulfillment.catalog import SyncReport
    from fulfillment.signals import price_list_applied
    from orders.models import PriceRule, Product
    from orders.services.pricing import exchange_rate_set_fixed

    settings.SYNC_AUTO_ACTIVATE = auto
    settings.PRICING_FIXED_RATE = ""
    exchange_rate_set_fixed(rub_per_unit=Decimal("0.01"))
    PriceRule.objects.create(markup_percent=Decimal("10"))
    Product.objects.create(name="New", sku="new1", price_kopecks=0, is_active=False, provider_price=10000)
    Product.objects.create(name="No cost", sku="new2", price_kopecks=0, is_active=False)

    price_list_applied.send(sender=SyncReport, report=SyncReport(created_skus=["new1", "new2"]))

    assert dict(Product.objects.values_list("sku", "is_active")) == {"new1": auto, "new2": False}


@pytest.mark.django_db
def test_staff_see_each_skus_state_in_the_admin(admin_client):
    from django.urls import reverse

    SupplierSku.objects.create(provider="digiflazz", code="xld10", product_name="XL 10k", **_ON)
    SupplierSku.objects.create(
        provider="digiflazz", code="xld25", product_name="XL 25k", **{**_ON, "stock": 0, "unlimited_stock": False}
    )

    page = admin_client.get(reverse("admin:fulfillment_suppliersku_changelist"))

    assert page.status_code == 200
    text = page.content.decode()
    assert "XL 10k" in text and "XL 25k" in text
    assert "out of stock" in text or "нет в наличии" in text
