"""The checkout gate and the database connection during bank calls (orders/capacity.py): customers
waiting on the bank can hold only some of a process's threads, never the webhook's, and no
database connection while they wait."""

from __future__ import annotations

import json
import threading

import pytest
from django.core.checks import Error, Warning
from django.db import connection, transaction

from orders.capacity import CHECKOUT_GATE, CheckoutGate, database_connection_release
from orders.checks import checkout_gate_check
from orders.models import IdempotencyKey, Order
from orders.tbank.client import TBankClient
from tests.checkout.conftest import order_body
from tests.conftest import WEBHOOK_URL, notification
from tests.fakes.tbank_server import Fault


@pytest.fixture
def full_gate(settings):
    """The process's gate with every checkout slot taken, as during a sale with a slow bank."""
    settings.CHECKOUT_MAX_IN_FLIGHT = 2
    # Both admitted here, in one thread, each holding its working slot (real ones would have
    # handed it back while waiting on the bank): room for both.
    settings.CHECKOUT_MAX_WORKING = 2
    with CHECKOUT_GATE.admit() as first, CHECKOUT_GATE.admit() as second:
        assert first and second
        yield CHECKOUT_GATE
    assert CHECKOUT_GATE.in_flight == 0


@pytest.mark.django_db
def test_a_checkout_over_the_limit_is_refused_at_once_with_retry_after_and_nothing_written(
    bank, post_order, phone_product, full_gate
):
    refused_before = full_gate.refused
    response = post_order(order_body(phone_product), key="flash-1")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    body = response.json()
    assert body["code"] == "checkout_busy" and "nothing was created" in body["detail"]
    assert not Order.objects.exists() and not IdempotencyKey.objects.exists()
    assert not bank.calls("Init")
    assert full_gate.refused == refused_before + 1


@pytest.mark.django_db
def test_the_refused_request_repeated_once_a_slot_is_free_creates_the_order(bank, post_order, phone_product, settings):
    settings.CHECKOUT_MAX_IN_FLIGHT = 1
    with CHECKOUT_GATE.admit():
        assert post_order(order_body(phone_product), key="flash-2").status_code == 503
    again = post_order(order_body(phone_product), key="flash-2")
    assert again.status_code == 201 and again.json()["payment_url"]
    assert Order.objects.count() == 1 and len(bank.calls("Init")) == 1


@pytest.mark.django_db
def test_the_webhook_and_the_catalogue_answer_while_every_checkout_slot_is_taken(
    client, bank, order_factory, phone_product, full_gate
):
    order = order_factory()
    answer = client.post(WEBHOOK_URL, data=json.dumps(notification(order)), content_type="application/json")
    assert (answer.status_code, answer.content) == (200, b"OK")
    order.refresh_from_db()
    assert order.status == "paid"
    assert client.get("/api/products").status_code == 200
    assert client.get(f"/orders/{order.public_id}/?token={order.access_token}").status_code == 200


@pytest.mark.django_db
def test_a_slot_is_given_back_whatever_the_checkout_answered(bank, post_order, phone_product, settings):
    settings.CHECKOUT_MAX_IN_FLIGHT = 1
    bank.inject("Init", Fault("refuse"))
    assert post_order(order_body(phone_product), key="k1").json()["code"] == "payment_unavailable"
    assert post_order({"email": "not an email", "items": []}).status_code == 400
    assert post_order(order_body(phone_product), key="k1").status_code == 201
    assert CHECKOUT_GATE.in_flight == 0


def test_the_gate_admits_up_to_its_limit_across_threads(settings):
    settings.CHECKOUT_MAX_IN_FLIGHT, settings.CHECKOUT_MAX_WORKING = 3, 3
    gate = CheckoutGate()
    inside, release = threading.Barrier(4), threading.Event()
    outcomes: list[bool] = []

    def checkout() -> None:
        with gate.admit() as admitted:
            outcomes.append(admitted)
            inside.wait(timeout=10)
            release.wait(timeout=10)

    threads = [threading.Thread(target=checkout) for _ in range(3)]
    for thread in threads:
        thread.start()
    inside.wait(timeout=10)  # three checkouts hold their slots
    with gate.admit() as fourth:
        assert fourth is False
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert outcomes == [True, True, True] and gate.in_flight == 0 and gate.refused == 1


def test_a_checkout_waiting_on_the_bank_leaves_its_working_slot_to_another(settings):
    settings.CHECKOUT_MAX_IN_FLIGHT, settings.CHECKOUT_MAX_WORKING = 4, 1
    gate = CheckoutGate()
    waiting_on_bank, answered, done = threading.Event(), threading.Event(), threading.Event()

    def slow_bank_checkout() -> None:
        with gate.admit() as admitted:
            assert admitted
            with gate.network_wait():
                waiting_on_bank.set()
                answered.wait(timeout=10)
            # After the call the rest of the checkout needs the working slot back.
            assert gate.working == 1
        done.set()

    thread = threading.Thread(target=slow_bank_checkout)
    thread.start()
    assert waiting_on_bank.wait(timeout=10)
    assert gate.working == 0 and gate.in_flight == 1
    with gate.admit() as admitted:  # the only working slot is free while the first waits on the bank
        assert admitted and gate.working == 1
        answered.set()
        # The first cannot go on working before this one gives the slot back.
        assert not done.wait(timeout=0.2)
    thread.join(timeout=10)
    assert done.is_set() and gate.working == 0 and gate.in_flight == 0


def test_refusals_are_logged_once_a_minute_with_the_limit_named(settings, caplog):
    settings.CHECKOUT_MAX_IN_FLIGHT = 1
    gate = CheckoutGate()
    with caplog.at_level("WARNING", logger="orders.capacity"), gate.admit():
        for _ in range(3):
            with gate.admit() as admitted:
                assert admitted is False
    [line] = [record.getMessage() for record in caplog.records]
    assert line.startswith("Checkout refused (503): 1 checkouts already in flight in this process")
    assert "CHECKOUT_MAX_IN_FLIGHT" in line and gate.refused == 3


# --- the database connection during bank calls ------------------------------------------------


def _pooled() -> bool:
    return connection.vendor == "postgresql" and bool(connection.settings_dict.get("OPTIONS", {}).get("pool"))


@pytest.mark.django_db(transaction=True)
def test_init_is_awaited_without_a_database_connection_when_pooled(bank, post_order, phone_product, monkeypatch):
    held_during_init: list[bool] = []
    original = TBankClient.init

    def init(self, **kwargs):
        held_during_init.append(connection.connection is not None)
        return original(self, **kwargs)

    monkeypatch.setattr(TBankClient, "init", init)
    response = post_order(order_body(phone_product), key="pooled")
    assert response.status_code == 201
    # With the PostgreSQL pool the connection went back to it for the wait; without a pool
    # (SQLite, or DATABASE_POOL=false) it is kept: closing would only mean opening a new one.
    assert held_during_init == [not _pooled()]
    assert Order.objects.get().payments.count() == 1  # queries after the wait take one again


@pytest.mark.django_db(transaction=True)
def test_a_connection_inside_a_transaction_is_never_released():
    with transaction.atomic():
        Order.objects.exists()
        database_connection_release()
        assert connection.connection is not None
        Order.objects.exists()


# --- the system check -------------------------------------------------------------------------


def test_the_check_warns_when_checkouts_may_take_every_thread(settings):
    settings.GUNICORN_THREADS, settings.CHECKOUT_MAX_IN_FLIGHT = 8, 8
    [message] = checkout_gate_check(None)
    assert isinstance(message, Warning) and message.id == "orders.W002" and "GUNICORN_THREADS (8)" in message.msg
    settings.CHECKOUT_MAX_IN_FLIGHT = 0
    [message] = checkout_gate_check(None)
    assert isinstance(message, Error) and message.id == "orders.E006"
    settings.CHECKOUT_MAX_IN_FLIGHT = 6
    assert checkout_gate_check(None) == []
    settings.GUNICORN_THREADS, settings.CHECKOUT_MAX_IN_FLIGHT = 1, 1  # one sync thread: nothing to keep free
    assert checkout_gate_check(None) == []
