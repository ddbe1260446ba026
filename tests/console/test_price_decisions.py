"""What staff see and do about supplier routing and price rises: backup SKUs on the product page,
repricing pauses, units waiting for a price decision (dashboard, units list, order page) and the
SKU and cost of each purchase."""

from __future__ import annotations

import pytest
from django.urls import reverse

from fulfillment.models import Delivery, DeliveryStatus, PauseKind, ProductPause
from fulfillment.services import fulfill_order
from orders.models import Product, ProductSource
from orders.services.pricing import products_resume_repriced
from tests.conftest import supplier_catalogue_sync

pytestmark = pytest.mark.django_db

INDEX = reverse("admin:index")
UNITS = reverse("admin:fulfillment_delivery_changelist")
PAUSES = reverse("admin:fulfillment_productpause_changelist")


def problem_counts(client) -> dict[str, int]:
    return {problem.key: problem.count for problem in client.get(INDEX).context["problems"]}


@pytest.fixture
def awaiting_decision(refused_for_price):
    """(order, unit): the next sync priced the product again at the supplier's new price (23,000
    IDR); the unit sold before the rise (capped at 21,000) waits for staff."""
    order, product = refused_for_price
    Product.objects.filter(pk=product.pk).update(max_provider_price=24000)
    report = products_resume_repriced(provider="digiflazz")
    assert report.units_held == 1
    return order, Delivery.objects.get(order=order)


def test_a_price_refusal_shows_on_the_dashboard_as_a_product_paused_for_repricing(admin_client, refused_for_price):
    found = problem_counts(admin_client)

    assert (found["products_repricing"], found["product_pauses"], found["price_decisions"]) == (1, 0, 0)
    page = admin_client.get(INDEX).content.decode()
    assert "Products paused for repricing" in page
    assert f'href="{PAUSES}?kind__exact=repricing"' in page
    listed = admin_client.get(f"{PAUSES}?kind__exact=repricing")
    assert [pause.sku for pause in listed.context["cl"].result_list] == ["ml86"]
    assert "waiting for the next sync" in listed.content.decode(), "no new price before the sync"


def test_units_waiting_for_a_price_decision_are_counted_listed_and_filtered(
    admin_client, awaiting_decision, digiflazz_order
):
    _order, held = awaiting_decision
    digiflazz_order(sku="ml86")  # sold at the new cost: not waiting for anybody

    assert problem_counts(admin_client)["price_decisions"] == 1
    assert f'href="{UNITS}?price_decision=waiting"' in admin_client.get(INDEX).content.decode()
    listed = admin_client.get(f"{UNITS}?price_decision=waiting")
    assert [unit.pk for unit in listed.context["cl"].result_list] == [held.pk]
    pauses = admin_client.get(f"{PAUSES}?kind__exact=repricing").content.decode()
    assert "23,000" in pauses, "the supplier's new price, in its currency"


def test_staff_buy_a_held_unit_at_the_new_price_from_the_units_list(admin_client, awaiting_decision, supplier):
    order, held = awaiting_decision

    response = admin_client.post(UNITS, {"action": "buy_at_new_price", "_selected_action": [held.pk]}, follow=True)

    assert "1 unit will be bought at the supplier&#x27;s new price now." in response.content.decode()
    held.refresh_from_db()
    assert held.max_price_override == 23000
    fulfill_order(order.pk)
    held.refresh_from_db()
    assert held.status == DeliveryStatus.DELIVERED and held.cost == 23000
    assert supplier.transaction_calls[-1]["max_price"] == 23000


def test_a_unit_no_price_rise_holds_is_left_alone_and_named(admin_client, refused_for_price):
    order, _product = refused_for_price  # paused, but not priced again yet: nothing to decide
    unit = Delivery.objects.get(order=order)

    response = admin_client.post(UNITS, {"action": "buy_at_new_price", "_selected_action": [unit.pk]}, follow=True)

    page = response.content.decode()
    assert "Left as they were (no supplier price rise holds them)" in page and unit.unit_key in page
    unit.refresh_from_db()
    assert unit.max_price_override is None


def test_buying_at_a_new_price_needs_its_own_permission(staff_client_factory, awaiting_decision):
    _order, held = awaiting_decision
    viewer = staff_client_factory("fulfillment.view_delivery", "orders.retry_fulfillment")

    listed = viewer.get(UNITS)
    assert "buy_at_new_price" not in listed.content.decode()
    viewer.post(UNITS, {"action": "buy_at_new_price", "_selected_action": [held.pk]})
    held.refresh_from_db()
    assert held.max_price_override is None

    buyer = staff_client_factory("fulfillment.view_delivery", "fulfillment.buy_at_new_price")
    assert "buy_at_new_price" in buyer.get(UNITS).content.decode()


def test_the_order_page_says_a_unit_waits_for_a_price_decision_and_how_to_decide(admin_client, awaiting_decision):
    order, _held = awaiting_decision

    page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()

    assert "1 unit waits for a price decision" in page
    assert "86 Diamonds (ml86: 23,000)" in page
    assert f"{UNITS}?price_decision=waiting&amp;q={order.pk}" in page, "the way to buy it"
    assert 'class="refund-held-button"' in page, "the way to refund it"
    assert "held: supplier now asks 23,000" in page


def test_the_units_table_and_timeline_name_the_backup_sku_that_delivered_and_its_cost(
    admin_client, supplier, product_factory, digiflazz_order
):
    product = product_factory(sku="ml86", name="86 Diamonds", max_provider_price=21000)
    ProductSource.objects.create(product=product, position=1, sku="ml86b")
    supplier.list_sku("ml86", unlimited_stock=False, stock=0)
    supplier_catalogue_sync(supplier)
    order = digiflazz_order(sku="ml86")
    fulfill_order(order.pk)

    page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))
    units = page.context["units"]
    assert [(unit.sku, unit.cost) for unit in units] == [("ml86b", "20,500")]
    html = page.content.decode()
    assert "SKU ml86b, supplier price 20,500" in html, "the timeline's purchase row"
    listed = admin_client.get(f"{UNITS}?q={order.pk}").content.decode()
    assert "ml86b" in listed and "backup" in listed and "20,500" in listed and "digiflazz" in listed


def test_staff_add_backup_skus_to_a_product_and_an_unknown_provider_is_refused(admin_client, product_factory):
    product = product_factory(sku="ml86", name="86 Diamonds")
    url = reverse("admin:orders_product_change", args=[product.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "category"}
    data.update({"name": product.name, "sku": product.sku, "price_kopecks": product.price_kopecks, "is_active": "on"})
    for key in ("category", "brand", "manual_price_kopecks", "max_provider_price"):
        data.pop(key, None)
    inline = {
        "sources-TOTAL_FORMS": "1",
        "sources-INITIAL_FORMS": "0",
        "sources-MIN_NUM_FORMS": "0",
        "sources-MAX_NUM_FORMS": "1000",
        "sources-0-position": "1",
        "sources-0-sku": "ml86b",
    }

    refused = admin_client.post(url, {**data, **inline, "sources-0-provider": "digiflaz"})
    assert refused.status_code == 200
    assert "Unknown provider digiflaz" in refused.content.decode()
    assert not ProductSource.objects.exists()

    saved = admin_client.post(url, {**data, **inline, "sources-0-provider": "digiflazz"})
    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert list(ProductSource.objects.values_list("product_id", "position", "provider", "sku")) == [
        (product.pk, 1, "digiflazz", "ml86b")
    ]
    # A change that posts no backup rows at all (a script editing the price) keeps them as they are.
    assert admin_client.post(url, {**data, "price_kopecks": "90000"}).status_code == 302
    assert ProductSource.objects.count() == 1
    assert Product.objects.get(pk=product.pk).manual_price_kopecks == 90000


def test_a_fault_pause_is_not_counted_as_repricing(admin_client, product_factory):
    ProductPause.objects.create(provider="digiflazz", sku="xl10", code="68", reason="Out of stock.")
    ProductPause.objects.create(
        provider="digiflazz", sku="ml86", kind=PauseKind.REPRICING, code="69", reason="Price above max_price."
    )

    found = problem_counts(admin_client)

    assert (found["product_pauses"], found["products_repricing"]) == (1, 1)
