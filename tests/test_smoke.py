import pytest

from fulfillment.models import Delivery, DeliveryAttempt, MockLedgerEntry
from orders.models import PaymentNotification
from tests.conftest import notification


@pytest.mark.django_db(transaction=True)
def test_paid_order_is_fulfilled(order_factory, post_notification):
    order = order_factory(quantities=(1, 3))
    response = post_notification(notification(order))
    assert response.status_code == 200, response.content
    assert response.content == b"OK"
    order.refresh_from_db()
    assert order.status == "fulfilled"
    assert Delivery.objects.filter(order=order, status="delivered").count() == 4
    assert MockLedgerEntry.objects.count() == 4
    assert DeliveryAttempt.objects.count() == 4
    assert PaymentNotification.objects.get().verdict == "applied"
