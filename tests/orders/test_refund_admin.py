"""The refunds admin: the list and its filters, the order's balance and refunds inline, and the
"Refund undelivered units" action (own permission, the amount shown before anything is sent)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from fulfillment.services import fulfill_order
from orders.models import Refund
from orders.refund_state import RefundState

pytestmark = pytest.mark.django_db

ACTION = "refund_undelivered_units"


@pytest.fixture
def failed_order(shop, settings):
    settings.REFUND_POLICY = "staff"
    order = shop([(10000, 1, "0811"), (7050, 1, "FAIL-1")])
    fulfill_order(order.pk)
    return order


def test_the_action_shows_the_amount_first_and_refunds_on_confirmation(
    failed_order, bank, staff_client_factory, django_capture_on_commit_callbacks
):
    client = staff_client_factory("orders.view_order", "orders.change_order", "orders.refund_undelivered_units")
    url = reverse("admin:orders_order_changelist")

    page = client.post(url, {"action": ACTION, "_selected_action": [failed_order.pk]})

    assert page.status_code == 200
    assert "70.50 ₽".encode() in page.content and b"FAIL-1" in page.content
    assert not Refund.objects.exists() and bank.calls("Cancel") == []

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(url, {"action": ACTION, "_selected_action": [failed_order.pk], "confirm": "1"})

    assert done.status_code == 302
    refund = Refund.objects.get(order=failed_order)
    assert refund.state == RefundState.SUCCEEDED and refund.amount_kopecks == 7050
    assert refund.decided_by.startswith("staff") and refund.decided_by_user is not None
    assert [call["Amount"] for call in bank.calls("Cancel")] == [7050]
    # Recorded in the order's admin history (and so its timeline) with who and when.
    from django.contrib.admin.models import LogEntry

    entry = LogEntry.objects.get(object_id=str(failed_order.pk))
    assert entry.get_change_message() == f"Added refund “{refund.pk}: 70.50 ₽”." and entry.user_id


def test_the_action_needs_its_own_permission(failed_order, staff_client_factory):
    client = staff_client_factory("orders.view_order", "orders.change_order")
    url = reverse("admin:orders_order_changelist")

    listing = client.get(url)
    response = client.post(url, {"action": ACTION, "_selected_action": [failed_order.pk], "confirm": "1"})

    assert ACTION.encode() not in listing.content
    assert response.status_code in (200, 302)
    assert not Refund.objects.exists()


def test_refund_list_order_balance_and_filters_render(failed_order, bank, admin_client):
    from orders.services.refunds import refund_decide_undelivered, refund_send

    refund = refund_decide_undelivered(order_id=failed_order.pk, decided_by="alice")
    refund_send(refund_id=refund.pk)

    listing = admin_client.get(reverse("admin:orders_refund_changelist"))
    failed = admin_client.get(reverse("admin:orders_refund_changelist") + "?needs_staff=failed")
    detail = admin_client.get(reverse("admin:orders_refund_change", args=[refund.pk]))
    order_page = admin_client.get(reverse("admin:orders_order_change", args=[failed_order.pk]))
    waiting = admin_client.get(reverse("admin:orders_order_changelist") + "?undelivered=waiting_for_staff")

    assert listing.status_code == failed.status_code == detail.status_code == order_page.status_code == 200
    assert "70.50 ₽".encode() in listing.content and b"PARTIAL_REFUNDED" in listing.content
    assert b"0 refunds" in failed.content or "70.50 ₽".encode() not in failed.content
    assert b"Cancel" in detail.content and b"ExternalRequestId" in detail.content
    assert b"test-terminal-password" not in detail.content
    text = order_page.content.decode()
    assert "paid 170.50 ₽; delivered 100.00 ₽; refunded 70.50 ₽" in text and "outstanding 0.00 ₽" in text
    assert waiting.status_code == 200 and f">{failed_order.pk}<" not in waiting.content.decode()
