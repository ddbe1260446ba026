"""The catalogue prices itself and never sells at a loss, on PostgreSQL, from the price list to the
codes: sync -> reprice -> checkout -> purchase with max_price -> a price rise -> pause -> resync ->
resume, then staff's decision for the unit sold before the rise.

The supplier is the fake Digiflazz (tests.conftest.FakeDigiflazz) with a catalogue that changes
between syncs; T-Bank is the fake bank over HTTP; the delivery task runs in-process as soon as
the paying transaction commits (tests.settings: eager Celery)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import responses
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus, PauseKind, ProductPause, ProviderAccount
from fulfillment.selectors import units_awaiting_price_decision
from fulfillment.services import units_buy_at_new_price
from orders.models import Order, Payment, PriceChange, PriceRule, Product
from orders.services.pricing import exchange_rate_set_fixed
from orders.state import OrderStatus
from tests.conftest import FakeDigiflazz, notification
from tests.fakes.tbank_server import FakeTBank

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shop(digiflazz_settings, settings, client):
    """The fake bank and the fake Digiflazz, a fixed rate of 0.0052 roubles per rupiah, one default
    rule (20 % markup, whole roubles) and new SKUs that go on sale once the rules price them."""
    settings.SYNC_AUTO_ACTIVATE = True
    settings.PRICING_COST_TOLERANCE_PERCENT = 2
    cache.clear()
    with FakeTBank(terminal_key=settings.TBANK_TERMINAL_KEY, password=settings.TBANK_PASSWORD) as bank:
        settings.TBANK_API_URL = bank.api_url
        settings.TBANK_SANDBOX = False
        settings.PUBLIC_BASE_URL = "https://shop.example.com"
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            rsps.add_passthru(bank.api_url)
            supplier = FakeDigiflazz(rsps)
            exchange_rate_set_fixed(rub_per_unit=Decimal("0.0052"))
            PriceRule.objects.create(markup_percent=Decimal("20"))
            yield supplier
    cache.clear()


def sync() -> None:
    # Digiflazz allows the whole list once per 5 minutes: the next sync comes later.
    ProviderAccount.objects.filter(provider="digiflazz").update(
        price_list_requested_at=timezone.now() - timedelta(minutes=6)
    )
    call_command("sync_digiflazz_products", verbosity=0)


def catalogue(client) -> dict[str, dict]:
    answer = client.get("/api/products", {"search": "Diamonds"})
    assert answer.status_code == 200
    return {row["name"]: row for row in answer.json()}


def buy(client, product: Product) -> tuple[int, Order | None]:
    """Check out one unit of `product`, then pay it through the webhook: (checkout status, order)."""
    body = {"email": "c@example.com", "items": [{"product": product.pk, "quantity": 1, "recipient": "081234567890"}]}
    answer = client.post("/api/orders", data=json.dumps(body), content_type="application/json")
    if answer.status_code != 201:
        return answer.status_code, None
    order = Order.objects.get(public_id=answer.json()["id"])
    paid = client.post(
        "/api/payments/tbank/notification",
        data=json.dumps(notification(order, PaymentId=int(Payment.objects.get(order=order).payment_id))),
        content_type="application/json",
    )
    assert paid.status_code == 200 and paid.content == b"OK"
    order.refresh_from_db()
    return 201, order


def purchases(supplier: FakeDigiflazz) -> list[tuple[str, int | None]]:
    return [(body["buyer_sku_code"], body.get("max_price")) for body in supplier.transaction_calls]


def test_sync_reprice_sell_price_rise_pause_resync_resume(shop, client):
    supplier = shop
    supplier.list_sku("ml86", product_name="86 Diamonds", price=20000)

    # Sync: the new SKU is priced by the rules and goes on sale.
    sync()
    product = Product.objects.get(sku="ml86")
    # 20,000 IDR x 0.0052 = 104.00 RUB; +20 % = 124.80, rounded up to whole roubles.
    assert (product.is_active, product.cost_kopecks, product.price_kopecks) == (True, 10400, 12500)
    assert catalogue(client)["86 Diamonds"]["sellable"] is True

    # Checkout, payment, delivery: bought with max_price = the priced cost + 2 %.
    status, first = buy(client, product)
    assert status == 201 and first.status == OrderStatus.FULFILLED
    assert purchases(supplier) == [("ml86", 20400)]

    # The supplier raises its price: the next purchase is refused for price, the product pauses.
    supplier.list_sku("ml86", price=22000)
    status, second = buy(client, product)
    assert status == 201 and second.status == OrderStatus.PAID
    held = Delivery.objects.get(order=second)
    assert (held.status, held.purchase_attempts) == (DeliveryStatus.WAITING, 0)
    pause = ProductPause.objects.get(sku="ml86")
    assert (pause.kind, pause.price) == (PauseKind.REPRICING, None)
    assert catalogue(client)["86 Diamonds"]["sellable"] is False
    assert buy(client, product)[0] == 422, "not sold while it waits for a new price"

    # Resync: repriced at the new cost, sold again; the new sale buys within its own cost.
    sync()
    product.refresh_from_db()
    # 22,000 x 0.0052 = 114.40; +20 % = 137.28 -> 138 RUB.
    assert (product.cost_kopecks, product.price_kopecks) == (11440, 13800)
    assert PriceChange.objects.filter(product=product).count() == 2
    assert catalogue(client)["86 Diamonds"]["sellable"] is True
    status, third = buy(client, product)
    assert status == 201 and third.status == OrderStatus.FULFILLED
    assert purchases(supplier)[-1] == ("ml86", 22440)

    # The unit sold before the rise waits for staff; orders keep the prices they were sold at.
    assert list(units_awaiting_price_decision()) == [held]
    assert [order.amount_kopecks for order in (first, second, third)] == [12500, 12500, 13800]

    # Staff buy it at the new cost: delivered, and the pause is gone.
    assert units_buy_at_new_price(unit_ids=[held.pk], decided_by="anna").bought == 1
    second.refresh_from_db()
    assert second.status == OrderStatus.FULFILLED
    assert purchases(supplier)[-1] == ("ml86", 22000)
    assert not ProductPause.objects.exists()
    # Every purchase sent a max_price; the only refusal was the price rise.
    assert [sku for sku, max_price in purchases(supplier) if max_price is None] == []
    assert [t["rc"] for t in supplier.transactions.values()] == ["00", "69", "00", "00"]
