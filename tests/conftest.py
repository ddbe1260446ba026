"""Shared fixtures: factories for products and orders, signed notifications, and the webhook client."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import Client

from orders.models import Order, Product
from orders.services import ItemSpec, order_create
from orders.tbank import sign_notification

WEBHOOK_URL = "/api/payments/tbank/notification"


@pytest.fixture
def product_factory(db) -> Callable[..., Product]:
    counter = iter(range(1, 10**6))

    def make(**overrides) -> Product:
        n = next(counter)
        values = {"name": f"Product {n}", "sku": f"sku{n}", "price_kopecks": 10000}
        values.update(overrides)
        return Product.objects.create(**values)

    return make


@pytest.fixture
def order_factory(product_factory) -> Callable[..., Order]:
    """order_factory(quantities=(1, 2), price=10000, recipient=...) -> a NEW order."""

    def make(*, quantities=(1,), price: int = 10000, recipient: str = "087800001230", email: str = "c@example.com"):
        items = [
            ItemSpec(product=product_factory(price_kopecks=price), recipient=recipient, quantity=q) for q in quantities
        ]
        return order_create(items=items, customer_email=email)

    return make


def notification(
    order: Order, *, status: str = "CONFIRMED", amount: int | None = None, password: str | None = None, **extra
) -> dict:
    payload = {
        "TerminalKey": settings.TBANK_TERMINAL_KEY,
        "OrderId": order.tbank_order_id,
        "Success": True,
        "Status": status,
        "PaymentId": 8742591,
        "ErrorCode": "0",
        "Amount": order.amount_kopecks if amount is None else amount,
        "CardId": 322264,
        "Pan": "430000******0777",
        "ExpDate": "1122",
    }
    payload.update(extra)
    return sign_notification(payload, password or settings.TBANK_PASSWORD)


@pytest.fixture
def post_notification(client: Client):
    def post(payload: dict | str | bytes):
        body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
        return client.post(WEBHOOK_URL, data=body, content_type="application/json")

    return post
