"""Shared fixtures: factories for products, orders and staff users, signed notifications, the webhook
client, and a scripted fulfillment provider."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.db.models import Count
from django.test import Client

from fulfillment.models import MockLedgerEntry
from fulfillment.providers.base import FulfillmentParams, FulfillmentProvider, FulfillmentResult
from orders.models import Order, Product
from orders.services import ItemSpec, order_create, order_mark_paid
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


# --- orders in a given state ------------------------------------------------------------------


@pytest.fixture
def paid_order_factory(order_factory) -> Callable[..., Order]:
    """paid_order_factory(quantities=(1,), payment_id="8742591", ...) -> a PAID order whose units
    are WAITING: nothing is delivered, because on_commit callbacks (the delivery task) do not run
    in a non-transactional test unless captured."""

    def make(*, payment_id: str = "8742591", **kwargs) -> Order:
        order = order_factory(**kwargs)
        order_mark_paid(order_id=order.pk, payment_id=payment_id)
        order.refresh_from_db()
        return order

    return make


def delivered_per_unit() -> dict[str, int]:
    """How many times the Mock provider really delivered each unit (unit_key -> count)."""
    rows = MockLedgerEntry.objects.filter(outcome="delivered").values("unit_key").annotate(n=Count("id"))
    return {row["unit_key"]: row["n"] for row in rows}


@pytest.fixture
def queued_deliveries(monkeypatch) -> list[int]:
    """Record deliver_order.delay(order_id) calls instead of running the task."""
    from fulfillment.tasks import deliver_order

    calls: list[int] = []
    monkeypatch.setattr(deliver_order, "delay", lambda order_id: calls.append(order_id))
    return calls


# --- a scripted provider --------------------------------------------------------------------


class ScriptedProvider(FulfillmentProvider):
    """A deterministic provider for tests: answers come from a per-SKU script, every call is recorded.

    `script(sku, *steps)` queues answers for that SKU, consumed one per call (fulfill or
    check_status): a FulfillmentResult, an exception instance (raised), or a callable taking the
    params. With the script exhausted it delivers, serial "SER-<reference>".
    """

    name = "scripted"
    # The instance the registry hands out: the `scripted_provider` fixture sets it, so the test
    # and the code under test (via get_fulfillment_provider) share one script and one call log.
    instance: ScriptedProvider | None = None

    def __init__(self) -> None:
        self.scripts: dict[str, list] = {}
        self.calls: list[tuple[str, FulfillmentParams]] = []

    @classmethod
    def from_settings(cls) -> ScriptedProvider:
        return cls.instance or cls()

    def script(self, sku: str, *steps) -> None:
        self.scripts.setdefault(sku, []).extend(steps)

    def _answer(self, kind: str, params: FulfillmentParams) -> FulfillmentResult:
        self.calls.append((kind, params))
        steps = self.scripts.get(params.sku)
        step = steps.pop(0) if steps else FulfillmentResult.delivered(serial=f"SER-{params.reference}")
        if isinstance(step, BaseException):
            raise step
        return step(params) if callable(step) else step

    def fulfill(self, params: FulfillmentParams) -> FulfillmentResult:
        return self._answer("fulfill", params)

    def check_status(self, params: FulfillmentParams) -> FulfillmentResult:
        return self._answer("check", params)

    def calls_for(self, sku: str) -> list[tuple[str, str]]:
        """(kind, reference) of every call for `sku`, in order."""
        return [(kind, params.reference) for kind, params in self.calls if params.sku == sku]


@pytest.fixture
def scripted_provider(settings) -> ScriptedProvider:
    """Register ScriptedProvider as "scripted" and make it FULFILLMENT_PROVIDER."""
    provider = ScriptedProvider()
    ScriptedProvider.instance = provider
    settings.FULFILLMENT_PROVIDERS = {**settings.FULFILLMENT_PROVIDERS, "scripted": "tests.conftest.ScriptedProvider"}
    settings.FULFILLMENT_PROVIDER = "scripted"
    yield provider
    ScriptedProvider.instance = None


# --- staff users ------------------------------------------------------------------------------


@pytest.fixture
def staff_client_factory(db, django_user_model) -> Callable[..., Client]:
    """staff_client_factory("orders.view_order", ...) -> a Client logged in as a staff user
    (not a superuser) holding exactly those permissions ("app_label.codename")."""
    counter = iter(range(1, 10**6))

    def make(*perms: str) -> Client:
        user = django_user_model.objects.create_user(username=f"staff{next(counter)}", password="x", is_staff=True)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        client = Client()
        client.force_login(user)
        return client

    return make
