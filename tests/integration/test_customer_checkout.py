"""The customer's whole loop through real processes: the API on gunicorn calls Init on a fake
T-Bank over HTTP, the bank's signed notification reaches the webhook, a Celery worker delivers,
the codes email is written by the worker, and the status JSON shows the codes."""

from __future__ import annotations

import email
import time
import uuid
from email import policy

import pytest
import requests

from fulfillment.models import Delivery
from orders.models import CustomerEmail, EmailState, Order, Product
from tests.fakes.tbank_server import FakeTBank
from tests.integration import conftest as integration
from tests.integration.conftest import wait_for_orders, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def emails_in(folder) -> list[email.message.EmailMessage]:
    messages = []
    for path in sorted(folder.glob("*.log")):
        for chunk in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
            if chunk.strip():
                messages.append(email.message_from_bytes(chunk.strip(), policy=policy.default))
    return messages


def test_order_pay_deliver_email_and_status_through_real_processes(stack, settings, tmp_path, monkeypatch, report):
    product = Product.objects.create(
        name="Mobile credit 10k", sku="xld10", price_kopecks=15000, recipient_label="Phone", recipient_pattern=r"08\d+"
    )
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    port = integration.free_port()
    monkeypatch.setattr(integration, "free_port", lambda: port)  # the web's address is known before it starts
    public = f"http://127.0.0.1:{port}"
    with FakeTBank(terminal_key=settings.TBANK_TERMINAL_KEY, password=settings.TBANK_PASSWORD) as bank:
        common = {"PUBLIC_BASE_URL": public, "TBANK_API_URL": bank.api_url, "EMAIL_URL": f"filemail://{mail_dir}"}
        stack.start_worker(concurrency=4, **common)
        web = stack.start_web(**common)
        assert web.url == public
        started = time.monotonic()

        key = str(uuid.uuid4())
        body = {"email": "buyer@example.com", "items": [{"product": product.pk, "quantity": 2, "recipient": "0812"}]}
        created = requests.post(f"{web.url}/api/orders", json=body, headers={"Idempotency-Key": key}, timeout=30)
        assert created.status_code == 201, created.text
        answer = created.json()
        repeat = requests.post(f"{web.url}/api/orders", json=body, headers={"Idempotency-Key": key}, timeout=30)
        assert repeat.json() == answer and len(bank.calls("Init")) == 1

        payment = bank.payment_for(answer["id"])
        assert payment.notification_url == f"{public}/api/payments/tbank/notification"
        assert bank.pay(payment.payment_id) == [(200, "OK"), (200, "OK")]

        order = Order.objects.get(public_id=answer["id"])
        wait_for_orders([order.pk], "fulfilled", timeout=60)
        wait_until(
            lambda: CustomerEmail.objects.filter(order=order, state=EmailState.SENT).exists(),
            timeout=60,
            what="the codes email to be sent",
        )
        codes = sorted(Delivery.objects.filter(order=order).values_list("serial", flat=True))
        assert len(codes) == 2 and all(codes)

        status = requests.get(
            f"{web.url}/api/orders/{answer['id']}", params={"token": answer["access_token"]}, timeout=30
        )
        assert status.status_code == 200
        units = status.json()["items"][0]["units"]
        assert status.json()["status"] == "fulfilled"
        assert sorted(unit["code"] for unit in units) == codes and {u["status"] for u in units} == {"delivered"}
        assert (
            requests.get(f"{web.url}/api/orders/{answer['id']}", params={"token": "x"}, timeout=30).status_code == 404
        )

        (message,) = emails_in(mail_dir)
        assert message["To"] == "buyer@example.com"
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        for code in codes:
            assert code in text and code in html
        assert answer["status_url"] in text
        page = requests.get(answer["status_url"], timeout=30)
        assert page.status_code == 200 and all(code in page.text for code in codes)
    report(orders=1, units=2, seconds_from_order_to_email=round(time.monotonic() - started, 1))
