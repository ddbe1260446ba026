"""A unit whose outcome stayed unknown may have been delivered: retries leave it alone unless told."""

import pytest
from django.core.management import CommandError, call_command

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.services import UNKNOWN_OUTCOME_CODE, order_fulfillment_reset_for_retry
from tests.conftest import delivered_per_unit


@pytest.fixture
def order_with_unknown_unit(paid_order_factory):
    order = paid_order_factory(quantities=(2,))
    unknown, failed = Delivery.objects.filter(order=order).order_by("unit_index")
    Delivery.objects.filter(pk=unknown.pk).update(status=DeliveryStatus.FAILED, last_code=UNKNOWN_OUTCOME_CODE)
    Delivery.objects.filter(pk=failed.pk).update(status=DeliveryStatus.FAILED, last_code="MOCK_UNAVAILABLE")
    return order, unknown, failed


def test_retry_holds_units_with_unknown_outcome(order_with_unknown_unit):
    order, unknown, failed = order_with_unknown_unit
    decision = order_fulfillment_reset_for_retry(order_id=order.pk)
    assert decision.queued and decision.held_unknown == 1
    assert "--rebuy-unknown" in decision.held_reason
    unknown.refresh_from_db()
    failed.refresh_from_db()
    assert unknown.status == DeliveryStatus.FAILED and unknown.purchase_no == 1
    assert failed.status == DeliveryStatus.WAITING and failed.purchase_no == 2


def test_command_rebuys_unknown_units_only_when_asked(order_with_unknown_unit, capsys):
    order, unknown, _ = order_with_unknown_unit
    with pytest.raises(CommandError) as exc:
        call_command("fulfill_order", str(order.pk))
    assert exc.value.returncode == 1
    assert Delivery.objects.get(pk=unknown.pk).status == DeliveryStatus.FAILED
    assert unknown.unit_key not in delivered_per_unit()

    call_command("fulfill_order", str(order.pk), "--rebuy-unknown")
    order.refresh_from_db()
    assert order.status == "fulfilled"
    assert delivered_per_unit()[unknown.unit_key] == 1


def test_admin_action_warns_about_held_units(order_with_unknown_unit, staff_client_factory):
    order, _, _ = order_with_unknown_unit
    client = staff_client_factory("orders.view_order", "orders.change_order", "orders.retry_fulfillment")
    response = client.post(
        "/admin/orders/order/",
        {"action": "retry_fulfillment", "_selected_action": [order.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert "unknown outcome" in text and "--rebuy-unknown" in text
