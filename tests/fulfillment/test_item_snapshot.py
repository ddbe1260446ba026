"""An order item keeps what was sold: the SKU, the provider and the max provider price as of the
order. Editing the product later changes new orders, never what an existing unit buys or the
SKU its status checks send."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from django.apps import apps as global_apps

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.services import fulfill_order
from orders.models import OrderItem, Product
from orders.services import ItemSpec, order_create
from tests.conftest import let_time_pass

pytestmark = pytest.mark.django_db


def _make_due(order) -> None:
    let_time_pass(order=order)


def test_order_create_keeps_what_was_sold(product_factory, settings):
    settings.FULFILLMENT_PROVIDER = "digiflazz"
    product = product_factory(sku="xld10", max_provider_price=10500, price_kopecks=25000)
    order = order_create(items=[ItemSpec(product=product, recipient="0812", quantity=2)])
    item = order.items.get()
    assert (item.sku, item.provider, item.max_provider_price, item.unit_price_kopecks) == (
        "xld10",
        "digiflazz",
        10500,
        25000,
    )


def test_a_product_edited_after_the_order_does_not_change_what_its_units_buy(
    scripted_provider, paid_order_factory, settings
):
    order = paid_order_factory(quantities=(2,))
    item = order.items.get()
    sold_sku = item.sku
    Product.objects.filter(pk=item.product_id).update(sku="edited-sku", max_provider_price=1)

    fulfill_order(order.pk)

    sent = [(params.sku, params.max_price) for _, params in scripted_provider.calls]
    assert sent == [(sold_sku, None), (sold_sku, None)]


def test_a_status_check_sends_the_sku_of_the_purchase_it_checks(fake_digiflazz, digiflazz_order):
    order = digiflazz_order(recipient="087800001233", max_price=10500)  # pending, checked later
    fulfill_order(order.pk)
    Product.objects.filter(sku="xld10").update(sku="xld25", max_provider_price=30000)
    _make_due(order)
    fulfill_order(order.pk)

    purchase, check = fake_digiflazz.transaction_calls
    assert check["ref_id"] == purchase["ref_id"]
    assert (check["buyer_sku_code"], check["max_price"]) == ("xld10", 10500)


def test_new_purchases_go_to_the_provider_the_item_was_sold_with(scripted_provider, paid_order_factory, settings):
    order = paid_order_factory()  # sold while FULFILLMENT_PROVIDER=scripted
    settings.FULFILLMENT_PROVIDER = "mock"  # the shop switches supplier afterwards

    fulfill_order(order.pk)

    unit = Delivery.objects.get(order=order)
    assert (unit.status, unit.provider) == (DeliveryStatus.DELIVERED, "scripted")
    assert len(scripted_provider.calls) == 1


def test_an_item_without_a_provider_uses_the_configured_one(scripted_provider, paid_order_factory, settings):
    order = paid_order_factory()
    OrderItem.objects.filter(order=order).update(provider="")  # an item older than the snapshot
    settings.FULFILLMENT_PROVIDER = "mock"
    fulfill_order(order.pk)
    assert Delivery.objects.get(order=order).provider == "mock"
    assert scripted_provider.calls == []


@pytest.mark.parametrize("rc", ["40", "43"])
def test_a_request_error_answered_to_a_status_check_is_not_a_final_failure(fake_digiflazz, pending_unit, rc):
    fake_digiflazz.settle(pending_unit.reference, status="Gagal", rc=rc)
    _make_due(pending_unit.order)
    fulfill_order(pending_unit.order_id)

    unit = Delivery.objects.get(pk=pending_unit.pk)
    assert (unit.status, unit.reference) == (DeliveryStatus.PENDING, pending_unit.reference)


def _snapshot_migration():
    [path] = Path(__file__).resolve().parents[2].glob("orders/migrations/*_orderitem_snapshot.py")
    return importlib.import_module(f"orders.migrations.{path.stem}")


def test_the_migration_fills_existing_items_from_their_product(order_factory, product_factory):
    product = product_factory(sku="old-sku", max_provider_price=700)
    order = order_create(items=[ItemSpec(product=product, recipient="0812")])
    other = order_factory()
    OrderItem.objects.filter(order=order).update(sku="", provider="", max_provider_price=None)
    kept = other.items.get()

    _snapshot_migration().backfill(global_apps, None)

    item = order.items.get()
    assert (item.sku, item.provider, item.max_provider_price) == ("old-sku", "", 700)
    assert other.items.get().sku == kept.sku  # items that have a snapshot keep it
