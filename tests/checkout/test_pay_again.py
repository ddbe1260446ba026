"""A declined payment: the page says nothing was charged and offers to pay again, a new payment
link for the same order (the same link on a repeat); paying it pays the order. The status page
in Russian: local time with its zone, money as Russians write it, unit price and line total."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from orders.models import Order, Payment, SandboxPayment
from tests.checkout.conftest import order_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def sandbox(settings):
    settings.DEBUG = True
    settings.TBANK_SANDBOX = True
    settings.TBANK_API_URL = "http://127.0.0.1:9/v2/"  # nothing listens: only the sandbox answers
    settings.PUBLIC_BASE_URL = "http://testserver"


def status_page(client, order, lang="en"):
    return client.get(f"/orders/{order.public_id}/?token={order.access_token}&lang={lang}").content.decode()


def test_a_declined_order_can_be_paid_again_with_a_new_link(sandbox, client, post_order, phone_product):
    body = post_order(order_body(phone_product)).json()
    client.post(body["payment_url"], {"action": "decline"})
    order = Order.objects.get()
    assert order.status == "cancelled"

    page = status_page(client, order)
    assert "Nothing was charged to your card." in page and 'id="pay-again"' in page
    assert 'class="unit-status' not in page  # no unit "Waiting" next to a declined payment
    assert "Не оплачен" in status_page(client, order, "ru") and "ничего не списано" in status_page(client, order, "ru")

    url = reverse("order-pay-again", args=[order.public_id])
    first = client.post(url, {"token": order.access_token, "lang": "en"})
    again = client.post(url, {"token": order.access_token, "lang": "en"})

    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"] != body["payment_url"]  # new link, the same on a repeat
    assert Payment.objects.filter(order=order).count() == 2
    client.post(first["Location"], {"action": "pay"})
    assert Order.objects.get().status in ("paid", "fulfilled")


def test_pay_again_needs_the_orders_token_and_changes_nothing_without_it(sandbox, client, post_order, phone_product):
    body = post_order(order_body(phone_product)).json()
    client.post(body["payment_url"], {"action": "decline"})
    order = Order.objects.get()

    response = client.post(reverse("order-pay-again", args=[order.public_id]), {"token": "wrong"})

    assert response.status_code == 404
    assert SandboxPayment.objects.count() == 1


def test_a_paid_order_is_not_paid_again(sandbox, client, post_order, phone_product):
    body = post_order(order_body(phone_product)).json()
    client.post(body["payment_url"], {"action": "pay"})
    order = Order.objects.get()

    response = client.post(reverse("order-pay-again", args=[order.public_id]), {"token": order.access_token})

    assert response.status_code == 302 and "/orders/" in response["Location"]
    assert SandboxPayment.objects.count() == 1


def test_the_russian_status_page_writes_money_and_time_as_russians_do(sandbox, client, post_order, product_factory):
    product = product_factory(price_kopecks=110000, recipient_label="Номер телефона")
    body = post_order(order_body(product, quantity=3)).json()
    order = Order.objects.get(public_id=body["id"])

    page = status_page(client, order, "ru")

    assert "3 300,00 ₽" in page  # the amount
    assert "Цена за единицу" in page and "1 100,00 ₽" in page
    assert "Сумма по позиции" in page
    assert re.search(r"\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d МСК", page)
    english = status_page(client, order, "en")
    assert "3,300.00 ₽" in english and "Price per unit" in english and re.search(r" \d\d:\d\d:\d\d MSK", english)


def test_the_root_says_where_to_go_and_there_is_no_favicon_404(client, db):
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="ru")
    assert page.status_code == 200 and "Консоль сотрудника" in page.content.decode()
    assert client.get("/favicon.ico").status_code == 204


def test_a_customer_whose_units_wait_on_a_paused_product_is_told(client, paid_order_factory):
    from fulfillment.services import product_pause

    order = paid_order_factory()
    assert "delayed at the supplier" not in status_page(client, order)
    product_pause(provider="mock", sku=order.items.get().sku, code="out_of_stock", reason="Out of stock.")

    assert "delayed at the supplier" in status_page(client, order)
    assert "задерживаются у поставщика" in status_page(client, order, "ru")
