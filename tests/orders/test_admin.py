"""The order admin: pages render, search finds orders by what staff have at hand, statuses stay read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.services import fulfill_order
from orders.models import Order, PaymentNotification
from orders.state import OrderStatus
from tests.conftest import notification

CHANGELIST = reverse("admin:orders_order_changelist")


@pytest.fixture
def two_orders(paid_order_factory, order_factory, post_notification):
    """A paid order with two units (one delivered) and its notification, plus an unrelated order."""
    target = order_factory(quantities=(1, 1), email="alice@example.com", recipient="087812345678")
    post_notification(notification(target, PaymentId=1111111))
    first_item = target.items.first()
    fulfill_order(target.pk, items=[first_item])
    other = paid_order_factory(email="bob@example.com", recipient="player-alpha", payment_id="2222222")
    return target, other


def search(client, term: str) -> list[Order]:
    response = client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_changelist_shows_status_and_units(admin_client, two_orders):
    target, other = two_orders
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    rows = {order.pk: order for order in response.context["cl"].result_list}
    assert set(rows) == {target.pk, other.pk}
    assert (rows[target.pk].units_delivered, rows[target.pk].units_total) == (1, 2)
    assert "1 / 2" in response.content.decode()


@pytest.mark.parametrize("field", ["id", "email", "payment_id", "reference", "recipient"])
def test_search_finds_the_order(admin_client, two_orders, field):
    target, _ = two_orders
    term = {
        "id": str(target.pk),
        "email": "alice@example.com",
        "payment_id": "1111111",
        "reference": Delivery.objects.filter(order=target).last().reference,
        "recipient": "087812345678",
    }[field]
    assert search(admin_client, term) == [target]


def test_search_by_email_part_and_an_unknown_term(admin_client, two_orders):
    target, other = two_orders
    assert search(admin_client, "bob@") == [other]
    assert search(admin_client, "no-such-thing") == []


def test_change_page_renders_items_deliveries_attempts_and_notifications(admin_client, two_orders):
    target, _ = two_orders
    response = admin_client.get(reverse("admin:orders_order_change", args=[target.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    for unit in Delivery.objects.filter(order=target):
        assert unit.reference in page
    assert "087812345678" in page
    assert "CONFIRMED" in page
    assert "1 / 2" in page
    # Status is read-only: no form field for it.
    assert 'name="status"' not in page


def change_form_data(client, url: str) -> dict:
    """The POST data of the change form as rendered: editable fields and the inlines' management forms."""
    context = client.get(url).context
    data = {name: value for name, value in context["adminform"].form.initial.items() if value is not None}
    for inline in context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({f"{management.prefix}-{key}": value for key, value in management.initial.items()})
    return data


def test_saving_the_change_form_keeps_the_status(admin_client, two_orders):
    target, _ = two_orders
    url = reverse("admin:orders_order_change", args=[target.pk])
    data = change_form_data(admin_client, url)
    data.update(customer_email="alice2@example.com", status="new")  # status is not a form field

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    stored = Order.objects.get(pk=target.pk)
    assert (stored.status, stored.customer_email) == (OrderStatus.PAID, "alice2@example.com")


def test_orders_cannot_be_added_or_deleted_from_the_admin(admin_client, two_orders):
    target, _ = two_orders
    assert admin_client.get(reverse("admin:orders_order_add")).status_code == 403
    assert admin_client.get(reverse("admin:orders_order_delete", args=[target.pk])).status_code == 403


@pytest.mark.parametrize(
    "model",
    [
        "orders_product",
        "orders_paymentnotification",
        "fulfillment_delivery",
        "fulfillment_deliveryattempt",
        "fulfillment_providerhalt",
        "fulfillment_mockledgerentry",
    ],
)
def test_other_changelists_render_and_search(admin_client, two_orders, model):
    target, _ = two_orders
    url = reverse(f"admin:{model}_changelist")
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": str(target.pk)}).status_code == 200
    assert admin_client.get(url, {"q": "not a number"}).status_code == 200


def test_delivery_change_page_renders(admin_client, two_orders):
    target, _ = two_orders
    delivered = Delivery.objects.get(order=target, status=DeliveryStatus.DELIVERED)
    response = admin_client.get(reverse("admin:fulfillment_delivery_change", args=[delivered.pk]))
    assert response.status_code == 200
    assert delivered.serial in response.content.decode()


def test_notification_page_shows_the_masked_body_only(admin_client, two_orders, settings):
    target, _ = two_orders
    record = PaymentNotification.objects.get(order=target)
    response = admin_client.get(reverse("admin:orders_paymentnotification_change", args=[record.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "&quot;Token&quot;: &quot;***&quot;" in page
    assert notification(target, PaymentId=1111111)["Token"] not in page
    assert settings.TBANK_PASSWORD not in page


def test_notifications_are_searchable_by_order_and_payment_id(admin_client, two_orders):
    target, _ = two_orders
    url = reverse("admin:orders_paymentnotification_changelist")
    for term in (target.public_id, "1111111"):
        response = admin_client.get(url, {"q": term})
        assert [record.order_id for record in response.context["cl"].result_list] == [target.pk]


def test_notifications_can_be_filtered_by_authentication(admin_client, two_orders, post_notification):
    target, _ = two_orders
    post_notification(b"\x01junk" * 100)
    url = reverse("admin:orders_paymentnotification_changelist")

    rejected = admin_client.get(url, {"authenticated__exact": "0"}).context["cl"].result_list
    accepted = admin_client.get(url, {"authenticated__exact": "1"}).context["cl"].result_list

    assert [(record.verdict, record.body_size) for record in rejected] == [("malformed", 500)]
    assert [record.order_id for record in accepted] == [target.pk]
    page = admin_client.get(reverse("admin:orders_paymentnotification_change", args=[rejected[0].pk]))
    assert rejected[0].body_sha256 in page.content.decode()
