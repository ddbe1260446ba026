"""GET /api/orders/<id>?token= and the HTML status page: the token check, unit statuses and codes."""

from __future__ import annotations

import pytest

from fulfillment.models import Delivery, DeliveryStatus
from orders.status import order_refunded_kopecks, unit_status
from tests.conftest import notification

pytestmark = pytest.mark.django_db


def url(order, token=None):
    return f"/api/orders/{order.public_id}?token={order.access_token if token is None else token}"


def test_the_right_token_shows_the_order(client, order_factory):
    order = order_factory(quantities=(2,), price=15000, email="buyer@example.com")
    response = client.get(url(order))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "status", "amount", "refunded_amount", "email", "created_at", "paid_at", "items"}
    assert body["id"] == order.public_id and body["status"] == "new" and body["amount"] == 30000
    assert body["refunded_amount"] == 0 and body["email"] == "buyer@example.com" and body["paid_at"] is None
    (item,) = body["items"]
    assert set(item) == {"product", "quantity", "recipient", "unit_price", "units"}
    assert item["quantity"] == 2 and item["unit_price"] == 15000 and item["recipient"] == "087800001230"
    assert item["units"] == [{"status": "waiting", "code": None}] * 2


@pytest.mark.parametrize("token", ["", "wrong", "x" * 32, "\u00e9" * 10])
def test_a_wrong_or_missing_token_is_404_like_an_unknown_order(client, order_factory, token):
    order = order_factory()
    response = client.get(url(order, token))
    unknown = client.get(f"/api/orders/{'0' * 24}?token={order.access_token}")
    assert response.status_code == unknown.status_code == 404
    assert response.json() == unknown.json()
    assert order.customer_email not in response.content.decode()


def test_the_token_of_another_order_does_not_open_this_one(client, order_factory):
    mine, other = order_factory(), order_factory()
    assert client.get(url(mine, other.access_token)).status_code == 404


def test_units_show_their_delivery_status_and_the_code_once_delivered(client, paid_order_factory):
    order = paid_order_factory(quantities=(3,))
    units = list(Delivery.objects.filter(order=order).order_by("unit_index"))
    Delivery.objects.filter(pk=units[0].pk).update(status=DeliveryStatus.DELIVERED, serial="SN-111")
    Delivery.objects.filter(pk=units[1].pk).update(status=DeliveryStatus.PENDING, serial="not-yet")
    body = client.get(url(order)).json()
    assert body["status"] == "paid" and body["paid_at"] is not None
    assert body["items"][0]["units"] == [
        {"status": "delivered", "code": "SN-111"},
        {"status": "in_progress", "code": None},
        {"status": "waiting", "code": None},
    ]


def test_unit_status_mapping_covers_every_delivery_status():
    assert {status: unit_status(status) for status in DeliveryStatus.values} == {
        "waiting": "waiting",
        "sending": "in_progress",
        "pending": "in_progress",
        "delivered": "delivered",
        "failed": "failed",
        "cancelled": "refunded",
        "refunding": "refunding",
        "refunded": "refunded",
    }
    assert unit_status(None) == "waiting"


def test_refunded_amount_is_the_order_amount_once_refunded(client, order_factory, post_notification):
    order = order_factory(quantities=(1,), price=12345)
    assert post_notification(notification(order, status="CONFIRMED")).status_code == 200
    order.refresh_from_db()
    assert order_refunded_kopecks(order) == 0
    # Refunded in full in the bank's portal: recorded as a refund, the unsent unit cancelled.
    assert post_notification(notification(order, status="REFUNDED", Amount=0)).status_code == 200
    order.refresh_from_db()
    assert order_refunded_kopecks(order) == 12345
    body = client.get(url(order)).json()
    assert body["refunded_amount"] == 12345 and body["items"][0]["units"] == [{"status": "refunded", "code": None}]


def test_status_page_shows_codes_with_a_copy_button_and_refreshes_until_final(client, paid_order_factory):
    order = paid_order_factory(quantities=(2,))
    page = client.get(f"/orders/{order.public_id}/?token={order.access_token}")
    assert page.status_code == 200
    assert b'http-equiv="refresh"' in page.content and b'class="copy"' not in page.content
    Delivery.objects.filter(order=order).update(status=DeliveryStatus.DELIVERED, serial="CODE-<b>")
    from orders.services import order_mark_fulfilled

    order_mark_fulfilled(order_id=order.pk)
    page = client.get(f"/orders/{order.public_id}/?token={order.access_token}")
    html = page.content.decode()
    assert 'http-equiv="refresh"' not in html
    assert html.count('data-code="CODE-&lt;b&gt;"') == 2 and "CODE-<b>" not in html  # escaped
    assert page["Cache-Control"] and "no-cache" in page["Cache-Control"]


def test_status_page_speaks_russian_and_english(client, order_factory):
    order = order_factory()
    base = f"/orders/{order.public_id}/?token={order.access_token}"
    assert "Ожидает оплаты" in client.get(base, HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Waiting for payment" in client.get(base, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Ожидает оплаты" in client.get(base + "&lang=ru", HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_status_page_with_a_wrong_token_is_404(client, order_factory):
    order = order_factory()
    assert client.get(f"/orders/{order.public_id}/?token=nope").status_code == 404


def test_the_new_order_page_links_to_its_payment(client, bank, order_factory):
    from orders.services.checkout import order_payment_start

    order = order_factory()
    payment = order_payment_start(order=order)
    page = client.get(f"/orders/{order.public_id}/?token={order.access_token}").content.decode()
    assert f'href="{payment.payment_url}"' in page
