"""Fixtures of the order tests: the fake T-Bank over real HTTP, and paid orders paid there too."""

from __future__ import annotations

import pytest

from orders.models import Order
from orders.services import ItemSpec, order_create, order_mark_paid
from tests.fakes.tbank_server import FakePayment, FakeTBank


@pytest.fixture
def bank(settings):
    with FakeTBank(terminal_key=settings.TBANK_TERMINAL_KEY, password=settings.TBANK_PASSWORD) as fake:
        settings.TBANK_API_URL = fake.api_url
        settings.TBANK_TIMEOUT_SECONDS = 2.0
        settings.MOCK_FULFILLMENT_FAIL_RECIPIENTS = ["FAIL-*"]
        settings.REFUND_POLICY = "auto"
        yield fake


@pytest.fixture
def shop(product_factory, bank):
    """shop(lines=[(price, quantity, recipient), ...]) -> a PAID order, paid at the fake bank too
    (with a receipt, so a partial Cancel without one is refused as a kassa would)."""
    counter = iter(range(1, 1000))

    def make(lines, *, payment_id: str | None = None, email: str = "buyer@example.com") -> Order:
        items = [
            ItemSpec(product=product_factory(price_kopecks=price), recipient=recipient, quantity=quantity)
            for price, quantity, recipient in lines
        ]
        order = order_create(items=items, customer_email=email)
        payment_id = payment_id or str(7100000000 + next(counter))
        order_mark_paid(order_id=order.pk, payment_id=payment_id)
        bank.payments[payment_id] = FakePayment(
            payment_id=payment_id,
            order_id=order.public_id,
            amount=order.amount_kopecks,
            status="CONFIRMED",
            receipt={"Items": [], "Email": email, "Taxation": "usn_income"},
        )
        order.refresh_from_db()
        return order

    return make
