"""Supplier routing (a product's backup SKUs) and repricing pauses (a purchase refused for price),
against the fake Digiflazz with a supplier catalogue that changes between syncs."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from fulfillment.models import AttemptKind, Delivery, DeliveryAttempt, DeliveryStatus, PauseKind, ProductPause
from fulfillment.selectors import held_units, products_sellability, units_awaiting_price_decision
from fulfillment.services import fulfill_order, units_buy_at_new_price
from fulfillment.supplier_catalog import WIB
from orders.models import Product, ProductSource, Refund
from orders.services.pricing import products_resume_repriced
from orders.state import OrderStatus
from tests.conftest import supplier_catalogue_sync as sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def product(product_factory):
    """The shop's product sold through ml86, with ml86b as its backup SKU."""
    product = product_factory(sku="ml86", name="86 Diamonds", max_provider_price=21000)
    ProductSource.objects.create(product=product, position=1, sku="ml86b")
    return product


def purchases(fake) -> list[tuple[str, str, int | None]]:
    return [(body["buyer_sku_code"], body["ref_id"], body.get("max_price")) for body in fake.transaction_calls]


def unit_of(order) -> Delivery:
    return Delivery.objects.get(order=order)


def test_a_unit_goes_through_the_backup_sku_when_the_catalogue_says_the_first_is_out_of_stock(
    supplier, product, digiflazz_order
):
    supplier.list_sku("ml86", unlimited_stock=False, stock=0)
    sync(supplier)
    order = digiflazz_order(sku="ml86")

    fulfill_order(order.pk)

    unit = unit_of(order)
    assert unit.status == DeliveryStatus.DELIVERED
    assert [sku for sku, _ref, _max in purchases(supplier)] == ["ml86b"], "the first SKU was never asked"
    assert unit.sku == "ml86b" and unit.cost == 20500
    attempt = DeliveryAttempt.objects.get(delivery=unit)
    assert (attempt.sku, attempt.price) == ("ml86b", 20500)
    # The backup is bought within what the sale allows.
    assert purchases(supplier)[0][2] == 21000


def test_after_a_product_refusal_the_unit_moves_to_the_next_sku_in_the_same_run(supplier, product, digiflazz_order):
    sync(supplier)  # the catalogue still says ml86 is in stock...
    supplier.list_sku("ml86", unlimited_stock=False, stock=0)  # ...but it ran out since
    order = digiflazz_order(sku="ml86")

    report = fulfill_order(order.pk)

    unit = unit_of(order)
    assert unit.status == DeliveryStatus.DELIVERED and report.complete
    (first, refused_ref, _), (second, bought_ref, _) = purchases(supplier)
    assert (first, second) == ("ml86", "ml86b")
    assert refused_ref != bought_ref, "a new reference after the final refusal"
    assert ProductPause.objects.filter(sku="ml86", kind=PauseKind.FAULT).exists()
    assert unit.purchase_attempts == 1, "the refusal was not the unit's fault"


def test_without_a_free_backup_the_unit_waits_for_the_pause(supplier, product, digiflazz_order):
    supplier.list_sku("ml86", unlimited_stock=False, stock=0)
    supplier.list_sku("ml86b", seller_product_status=False)
    order = digiflazz_order(sku="ml86")

    fulfill_order(order.pk)  # ml86 refused: paused; ml86b refused: paused
    fulfill_order(order.pk)  # both paused: nothing is asked

    assert [sku for sku, _ref, _max in purchases(supplier)] == ["ml86", "ml86b"]
    unit = unit_of(order)
    assert unit.status == DeliveryStatus.WAITING and unit.purchase_attempts == 0
    assert list(held_units(order_id=order.pk)) == [unit]


def test_a_purchase_whose_outcome_is_unknown_never_moves_to_another_sku(supplier, product, digiflazz_order):
    order = digiflazz_order(sku="ml86", recipient="087800001233")  # Digiflazz's documented pending case
    fulfill_order(order.pk)
    unit = unit_of(order)
    assert unit.status == DeliveryStatus.PENDING
    # The first SKU is paused and the backup is free: still, the open purchase is only checked.
    supplier.list_sku("ml86", unlimited_stock=False, stock=0)
    sync(supplier)
    ProductPause.objects.create(provider="digiflazz", sku="ml86", reason="out of stock")
    past = timezone.now() - timedelta(minutes=5)
    Delivery.objects.filter(pk=unit.pk).update(next_attempt_at=past, reference_sent_at=past)
    DeliveryAttempt.objects.filter(delivery=unit).update(started_at=past)

    fulfill_order(order.pk)

    assert purchases(supplier) == [("ml86", unit.reference, 21000)] * 2, "the same purchase, checked"
    unit.refresh_from_db()
    assert unit.status == DeliveryStatus.PENDING and unit.sku == ""
    assert list(DeliveryAttempt.objects.filter(delivery=unit).values_list("kind", flat=True)) == [
        AttemptKind.PURCHASE,
        AttemptKind.CHECK,
    ]


def test_a_product_is_sellable_while_some_sku_of_it_is(supplier, product):
    supplier.list_sku("ml86", unlimited_stock=False, stock=0)
    sync(supplier)
    assert products_sellability(products=[(product.pk, "ml86")])[product.pk].sellable

    # Backup in its daily cut-off (WIB), first out of stock: not sellable, back when the cut-off ends.
    at = datetime(2026, 12, 3, 23, 50, tzinfo=WIB)
    supplier.list_sku("ml86b", start_cut_off="23:45", end_cut_off="0:15")
    sync(supplier)
    verdict = products_sellability(products=[(product.pk, "ml86")], at=at)[product.pk]
    assert not verdict.sellable
    assert verdict.again_at == datetime(2026, 12, 4, 0, 15, tzinfo=WIB)


# --- repricing ------------------------------------------------------------------------------


def test_a_price_refusal_pauses_the_product_for_repricing_and_refunds_nothing(refused_for_price, supplier, settings):
    order, product = refused_for_price
    settings.REFUND_POLICY = "auto"
    unit = unit_of(order)
    assert unit.status == DeliveryStatus.WAITING
    assert unit.purchase_attempts == 0, "no attempt used: the unit will be bought at the new price"
    pause = ProductPause.objects.get(sku="ml86")
    assert (pause.kind, pause.price, pause.next_probe_at, pause.product_id) == (
        PauseKind.REPRICING,
        None,
        None,
        product.pk,
    )
    verdict = products_sellability(products=[(product.pk, "ml86")])[product.pk]
    assert not verdict.sellable and "repriced" in str(verdict.reason)

    Delivery.objects.filter(pk=unit.pk).update(next_attempt_at=timezone.now())
    fulfill_order(order.pk)  # no probe: time does not bring a new price

    assert len(purchases(supplier)) == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID and not Refund.objects.exists()


def test_a_sync_that_leaves_the_shop_price_below_the_new_cost_keeps_the_pause(refused_for_price, supplier):
    _order, product = refused_for_price
    report = products_resume_repriced(provider="digiflazz")  # the staff cap (21000) still below 23000

    assert report.still_paused == ["ml86"]
    assert ProductPause.objects.get(sku="ml86").price is None
    assert not products_sellability(products=[(product.pk, "ml86")])[product.pk].sellable


def test_after_the_sync_new_orders_go_and_the_units_sold_before_wait_for_staff(
    refused_for_price, supplier, digiflazz_order
):
    old_order, product = refused_for_price
    Product.objects.filter(pk=product.pk).update(max_provider_price=24000)  # repriced: sold at the new cost

    report = products_resume_repriced(provider="digiflazz")

    assert (report.repriced, report.units_held, report.lifted) == (["ml86"], 1, [])
    assert ProductPause.objects.get(sku="ml86").price == 23000
    assert products_sellability(products=[(product.pk, "ml86")])[product.pk].sellable
    new_order = digiflazz_order(sku="ml86")
    fulfill_order(new_order.pk)
    fulfill_order(old_order.pk)
    assert unit_of(new_order).status == DeliveryStatus.DELIVERED
    held = unit_of(old_order)
    assert held.status == DeliveryStatus.WAITING
    assert list(units_awaiting_price_decision()) == [held]
    assert [(sku, max_price) for sku, _ref, max_price in purchases(supplier)] == [("ml86", 21000), ("ml86", 24000)]

    decision = units_buy_at_new_price(unit_ids=[held.pk], decided_by="anna")
    fulfill_order(old_order.pk)

    assert decision.bought == 1
    held.refresh_from_db()
    assert held.status == DeliveryStatus.DELIVERED and held.max_price_override == 23000
    assert purchases(supplier)[-1][2] == 23000, "bought at up to the new price staff agreed to"
    assert not ProductPause.objects.exists(), "the pause held no unit any more"


def test_when_the_price_drops_back_the_held_units_go_by_themselves(refused_for_price, supplier):
    order, _product = refused_for_price
    supplier.list_sku("ml86", price=20800)
    sync(supplier)

    report = products_resume_repriced(provider="digiflazz")
    fulfill_order(order.pk)

    assert (report.units_released, report.units_held, report.lifted) == (1, 0, ["ml86"])
    assert unit_of(order).status == DeliveryStatus.DELIVERED
    assert not ProductPause.objects.exists()


def test_staff_cannot_buy_a_unit_no_repriced_pause_holds(refused_for_price):
    order, _product = refused_for_price
    decision = units_buy_at_new_price(unit_ids=[unit_of(order).pk], decided_by="anna")  # not repriced yet

    assert decision.bought == 0 and decision.skipped
    assert unit_of(order).max_price_override is None


def test_a_new_price_refusal_after_the_sync_waits_for_the_next_sync_again(refused_for_price, supplier, digiflazz_order):
    _order, product = refused_for_price
    Product.objects.filter(pk=product.pk).update(max_provider_price=24000)
    products_resume_repriced(provider="digiflazz")
    supplier.list_sku("ml86", price=25000)  # risen again before the next sync

    fulfill_order(digiflazz_order(sku="ml86").pk)

    pause = ProductPause.objects.get(sku="ml86")
    assert (pause.kind, pause.price, pause.repriced_at) == (PauseKind.REPRICING, None, None)
    assert not products_sellability(products=[(product.pk, "ml86")])[product.pk].sellable


def test_with_the_mock_an_out_of_stock_sku_is_delivered_through_its_backup(settings, product_factory):
    from fulfillment.models import MockLedgerEntry
    from orders.services import ItemSpec, order_create, order_mark_paid

    settings.FULFILLMENT_PROVIDER = "mock"
    settings.MOCK_FULFILLMENT_OUT_OF_STOCK_SKUS = ["pubg325"]
    product = product_factory(sku="pubg325")
    ProductSource.objects.create(product=product, sku="pubg325-b")
    order = order_create(items=[ItemSpec(product=product, recipient="5123456789", quantity=2)])
    order_mark_paid(order_id=order.pk, payment_id="7100000001")

    assert fulfill_order(order.pk).complete

    assert set(Delivery.objects.filter(order=order).values_list("sku", flat=True)) == {"pubg325-b"}
    assert sorted(MockLedgerEntry.objects.values_list("sku", "outcome")) == [("pubg325-b", "delivered")] * 2
    assert ProductPause.objects.filter(sku="pubg325").exists()


def test_staff_can_refund_a_unit_held_for_a_price_decision_instead(refused_for_price):
    from orders.services.refunds import refund_decide_undelivered

    order, product = refused_for_price
    Product.objects.filter(pk=product.pk).update(max_provider_price=24000)
    products_resume_repriced(provider="digiflazz")
    held = unit_of(order)
    assert list(units_awaiting_price_decision()) == [held]

    refund = refund_decide_undelivered(order_id=order.pk, decided_by="anna", include_held=True)

    held.refresh_from_db()
    assert refund is not None and held.refund_id == refund.pk
    assert refund.amount_kopecks == held.item.unit_price_kopecks
    assert list(units_awaiting_price_decision()) == []
    assert units_buy_at_new_price(unit_ids=[held.pk], decided_by="anna").bought == 0, "never bought once refunded"
