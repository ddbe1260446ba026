"""The "Retry fulfillment" admin action and its permission, and lifting a provider halt from the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import constants
from django.urls import reverse
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus, ProviderHalt
from fulfillment.services import provider_halt
from orders.models import Order
from orders.state import OrderStatus, order_transition

CHANGELIST = reverse("admin:orders_order_changelist")
VIEW = "orders.view_order"
RETRY = "orders.retry_fulfillment"


def action_names(client) -> list[str]:
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    form = response.context["action_form"]
    return [name for name, _ in form.fields["action"].choices] if form else []


def run_action(client, orders: list[Order]):
    return client.post(
        CHANGELIST,
        {"action": "retry_fulfillment", "_selected_action": [order.pk for order in orders], "index": 0},
        follow=True,
    )


def messages_of(response) -> list[tuple[int, str]]:
    return [(message.level, message.message) for message in response.context["messages"]]


@pytest.fixture
def orders(paid_order_factory, order_factory):
    """A PAID order with a FAILED unit, a NEW one, a FULFILLED one, and a PAID one already delivered."""
    failed = paid_order_factory(quantities=(2,))
    first, second = Delivery.objects.filter(order=failed)
    Delivery.objects.filter(pk=first.pk).update(status=DeliveryStatus.DELIVERED)
    Delivery.objects.filter(pk=second.pk).update(status=DeliveryStatus.FAILED, failure_scope="permanent")
    new = order_factory()
    fulfilled = paid_order_factory()
    Delivery.objects.filter(order=fulfilled).update(status=DeliveryStatus.DELIVERED)
    order_transition(order_id=fulfilled.pk, target=OrderStatus.FULFILLED)
    delivered = paid_order_factory()
    Delivery.objects.filter(order=delivered).update(status=DeliveryStatus.DELIVERED)
    return {"failed": failed, "new": new, "fulfilled": fulfilled, "delivered": delivered}


@pytest.mark.parametrize("perms", [(VIEW,), (VIEW, "orders.change_order")])
def test_staff_without_the_permission_does_not_see_the_action(staff_client_factory, orders, perms):
    client = staff_client_factory(*perms)
    assert "retry_fulfillment" not in action_names(client)


@pytest.mark.parametrize("perms", [(VIEW,), (VIEW, "orders.change_order")])
def test_staff_without_the_permission_cannot_run_the_action(staff_client_factory, orders, queued_deliveries, perms):
    client = staff_client_factory(*perms)
    before = list(Delivery.objects.order_by("pk").values_list("status", "reference"))

    response = run_action(client, [orders["failed"]])

    assert response.status_code == 200
    assert [text for _, text in messages_of(response) if "Queued" in text or "Skipped" in text] == []
    assert list(Delivery.objects.order_by("pk").values_list("status", "reference")) == before
    assert queued_deliveries == []


def test_staff_with_the_permission_sees_the_action(staff_client_factory, orders):
    assert "retry_fulfillment" in action_names(staff_client_factory(VIEW, RETRY))


def test_superuser_sees_the_action(admin_client, orders):
    assert "retry_fulfillment" in action_names(admin_client)


def test_action_queues_paid_orders_and_reports_skipped_ones_with_reasons(
    staff_client_factory, orders, queued_deliveries, django_capture_on_commit_callbacks
):
    client = staff_client_factory(VIEW, RETRY)
    failed_unit = Delivery.objects.get(order=orders["failed"], status=DeliveryStatus.FAILED)

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(client, list(orders.values()))

    assert response.status_code == 200
    failed, new, fulfilled, delivered = (orders[key] for key in ("failed", "new", "fulfilled", "delivered"))
    messages = messages_of(response)
    # Orders are named by their public id, the number customers see.
    assert (constants.SUCCESS, f"Queued for delivery: {failed.public_id}.") in messages
    (warning,) = [text for level, text in messages if level == constants.WARNING]
    assert warning.startswith("Skipped: ")
    assert f"{new.public_id}: Order {new.pk} is new, not paid: only paid orders are delivered." in warning
    assert f"{fulfilled.public_id}: Order {fulfilled.pk} is fulfilled, not paid" in warning
    assert "already fulfilled" in warning
    assert f"{delivered.public_id}: every unit is already delivered" in warning

    failed, new, delivered = failed.pk, new.pk, delivered.pk
    assert queued_deliveries == [failed]
    unit = Delivery.objects.get(pk=failed_unit.pk)
    assert (unit.status, unit.purchase_no, unit.purchase_attempts) == (DeliveryStatus.WAITING, 2, 0)
    assert unit.reference != failed_unit.reference
    assert Order.objects.get(pk=delivered).status == OrderStatus.FULFILLED
    assert Order.objects.get(pk=new).status == OrderStatus.NEW


def test_action_runs_the_delivery_with_eager_celery(staff_client_factory, orders, django_capture_on_commit_callbacks):
    client = staff_client_factory(VIEW, RETRY)

    with django_capture_on_commit_callbacks(execute=True):
        run_action(client, [orders["failed"]])

    assert Order.objects.get(pk=orders["failed"].pk).status == OrderStatus.FULFILLED


def test_action_warns_about_a_halted_provider(staff_client_factory, orders, queued_deliveries):
    provider_halt(provider="mock", code="41", reason="Signature rejected: check DIGIFLAZZ_API_KEY.")
    client = staff_client_factory(VIEW, RETRY)

    response = run_action(client, [orders["failed"]])

    errors = [text for level, text in messages_of(response) if level == constants.ERROR]
    assert errors == [
        "Deliveries through mock are halted: Signature rejected: check DIGIFLAZZ_API_KEY. Queued orders wait "
        "until the halt is lifted (Provider halts)."
    ]


def test_deleting_a_halt_in_the_admin_makes_postponed_units_due(admin_client, paid_order_factory):
    order = paid_order_factory()
    provider_halt(provider="mock", code="41", reason="bad key")
    Delivery.objects.filter(order=order).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    halt = ProviderHalt.objects.get()

    response = admin_client.post(reverse("admin:fulfillment_providerhalt_delete", args=[halt.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not ProviderHalt.objects.exists()
    assert Delivery.objects.get(order=order).next_attempt_at <= timezone.now()
