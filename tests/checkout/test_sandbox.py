"""TBANK_SANDBOX: Init answered locally, a local pay page whose Pay sends a bank-signed
notification through the webhook processing; refused unless DEBUG."""

from __future__ import annotations

import re

import pytest
from django.core import checks

from fulfillment.models import Delivery
from orders.checks import tbank_sandbox_check
from orders.models import Order, PaymentNotification, SandboxPayment
from orders.tbank.client import TBankClient, tbank_client
from orders.tbank.sandbox import SandboxTBankClient
from tests.checkout.conftest import order_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def sandbox(settings):
    settings.DEBUG = True
    settings.TBANK_SANDBOX = True
    settings.TBANK_API_URL = "http://127.0.0.1:9/v2/"  # nothing listens: the real client would fail
    settings.PUBLIC_BASE_URL = "http://testserver"


def test_the_check_refuses_the_sandbox_without_debug(settings):
    settings.TBANK_SANDBOX, settings.DEBUG = True, False
    (error,) = tbank_sandbox_check(None)
    assert error.level == checks.ERROR and error.id == "orders.E002" and "DJANGO_DEBUG" in error.msg
    settings.DEBUG = True
    assert tbank_sandbox_check(None) == []


def test_the_client_is_chosen_in_one_place(settings, sandbox):
    assert type(tbank_client()) is SandboxTBankClient
    settings.TBANK_SANDBOX = False
    assert type(tbank_client()) is TBankClient


def test_a_purchase_completes_in_the_sandbox(sandbox, client, post_order, phone_product):
    created = post_order(order_body(phone_product, quantity=2), key="sandbox-1")
    assert created.status_code == 201, created.content
    body = created.json()
    payment = SandboxPayment.objects.get()
    assert body["payment_url"] == f"http://testserver/sandbox/tbank/pay/{payment.payment_id}"
    page = client.get(body["payment_url"])
    assert page.status_code == 200 and "300.00" in page.content.decode() and 'id="pay"' in page.content.decode()

    paid = client.post(body["payment_url"], {"action": "pay"})

    assert paid.status_code == 302 and paid["Location"] == body["status_url"]
    order = Order.objects.get()
    assert order.status == "paid" and order.payment_id == payment.payment_id
    assert list(PaymentNotification.objects.values_list("bank_status", "verdict", "source")) == [
        ("CONFIRMED", "applied", "webhook"),
        ("AUTHORIZED", "recorded", "webhook"),
    ]
    assert Delivery.objects.filter(order=order).count() == 2  # the units to deliver exist
    # The sandbox keeps its state in the database: GetState and CheckOrder answer from it.
    assert tbank_client().get_state(payment_id=payment.payment_id).status == "CONFIRMED"
    assert [p.status for p in tbank_client().check_order(order_id=order.public_id)] == ["CONFIRMED"]
    # Pressing Pay again changes nothing.
    client.post(body["payment_url"], {"action": "pay"})
    assert PaymentNotification.objects.count() == 2


def test_decline_cancels_the_order(sandbox, client, post_order, phone_product):
    body = post_order(order_body(phone_product)).json()
    declined = client.post(body["payment_url"], {"action": "decline"})
    assert declined.status_code == 302
    assert Order.objects.get().status == "cancelled"
    assert SandboxPayment.objects.get().status == "REJECTED"


def test_the_notification_is_signed_as_the_bank_signs_it(sandbox, client, post_order, phone_product, monkeypatch):
    from orders.services import notifications

    bodies = []
    real = notifications.payment_notification_process

    def spy(*, body, remote_addr=None):
        bodies.append(body)
        return real(body=body, remote_addr=remote_addr)

    monkeypatch.setattr(notifications, "payment_notification_process", spy)
    body = post_order(order_body(phone_product)).json()
    client.post(body["payment_url"], {"action": "pay"})
    from django.conf import settings

    from orders import tbank

    for raw in bodies:
        payload = tbank.parse_notification(raw)
        assert tbank.token_is_valid(payload, settings.TBANK_PASSWORD)
        assert isinstance(payload["PaymentId"], int) and payload["Success"] is True


def test_cancel_of_a_sandbox_payment(sandbox, post_order, phone_product):
    post_order(order_body(phone_product))
    payment = SandboxPayment.objects.get()
    assert tbank_client().cancel(payment_id=payment.payment_id).status == "CANCELED"


def test_the_pay_page_is_404_when_the_sandbox_is_off(client, settings, db):
    settings.TBANK_SANDBOX = False
    SandboxPayment.objects.create(payment_id="1234567890", order_ref="x", amount_kopecks=100)
    assert client.get("/sandbox/tbank/pay/1234567890").status_code == 404


def test_make_run_prints_a_curl_line_that_creates_an_order():
    from pathlib import Path

    script = (Path(__file__).resolve().parents[2] / "scripts" / "run-dev.sh").read_text()
    assert re.search(r"curl -s -X POST \$BASE/api/orders", script)
    assert 'PORT="${PORT:-8000}"' in script and 'BASE="http://127.0.0.1:${PORT}"' in script
    # The summary is printed last, after both processes are started.
    assert script.index("runserver") < script.index("cat <<SUMMARY") < script.index("wait -n")
    env = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    assert re.search(r"^TBANK_SANDBOX=true$", env, re.M)


def test_a_partial_cancel_answers_like_the_bank(sandbox, client, post_order, phone_product):
    """PARTIAL_REFUNDED with what is left (not REFUNDED with NewAmount 0); the rest ends REFUNDED; a
    repeated ExternalRequestId refunds nothing again; more than is left is refused."""
    from orders.tbank.client import TBankRefused

    body = post_order(order_body(phone_product, quantity=3)).json()
    client.post(body["payment_url"], {"action": "pay"})
    payment = SandboxPayment.objects.get()
    total = payment.amount_kopecks
    bank = tbank_client()

    first = bank.cancel(payment_id=payment.payment_id, amount=total // 3, external_request_id="r-1")
    assert (first.status, first.original_amount, first.new_amount) == ("PARTIAL_REFUNDED", total, total - total // 3)
    again = bank.cancel(payment_id=payment.payment_id, amount=total // 3, external_request_id="r-1")
    assert (again.status, again.new_amount) == ("PARTIAL_REFUNDED", total - total // 3)
    assert bank.get_state(payment_id=payment.payment_id).status == "PARTIAL_REFUNDED"
    with pytest.raises(TBankRefused):
        bank.cancel(payment_id=payment.payment_id, amount=total, external_request_id="r-2")
    rest = bank.cancel(payment_id=payment.payment_id, external_request_id="r-3")
    assert (rest.status, rest.original_amount, rest.new_amount) == ("REFUNDED", total - total // 3, 0)
    assert SandboxPayment.objects.get().refunded_kopecks == total
