"""Fixtures of the checkout tests: a fake T-Bank over real HTTP, products, an API client."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.core.cache import cache
from django.test import Client

from orders.models import Product
from tests.fakes.tbank_server import FakeTBank


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def bank(settings):
    """A FakeTBank the shop talks to (same terminal credentials as tests.settings)."""
    with FakeTBank(terminal_key=settings.TBANK_TERMINAL_KEY, password=settings.TBANK_PASSWORD) as fake:
        settings.TBANK_API_URL = fake.api_url
        settings.TBANK_TIMEOUT_SECONDS = 1.0
        settings.PUBLIC_BASE_URL = "https://shop.example.com"
        settings.TBANK_SANDBOX = False
        yield fake


@pytest.fixture
def phone_product(db) -> Product:
    return Product.objects.create(
        name="Mobile credit 10k",
        sku="xld10",
        price_kopecks=15000,
        recipient_label="Phone number",
        recipient_pattern=r"08[0-9]{8,11}",
    )


@pytest.fixture
def voucher_product(db) -> Product:
    return Product.objects.create(name="Voucher 50k", sku="vc50", price_kopecks=55000)


@pytest.fixture
def post_order(client: Client) -> Callable:
    """post_order(body, key=None) -> response of POST /api/orders."""

    def post(body, *, key: str | None = None, **headers):
        if key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = key
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return client.post("/api/orders", data=data, content_type="application/json", **headers)

    return post


def order_body(product: Product, *, quantity: int = 1, recipient: str = "0812345678", email: str = "buyer@example.com"):
    return {"email": email, "items": [{"product": product.pk, "quantity": quantity, "recipient": recipient}]}
