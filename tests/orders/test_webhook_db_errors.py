"""The database failing in the middle of a payment notification: the bank gets a non-OK answer,
nothing of the notification is kept, and its retry is processed normally.

tests/integration/test_failures.py kills the server's real database connection at the same
point; this one runs on every backend by making the last write of the transaction fail.
"""

from __future__ import annotations

import pytest
from django.db import OperationalError

import orders.services.notifications
from fulfillment.models import Delivery, MockLedgerEntry
from orders.models import Order, PaymentNotification
from tests.conftest import delivered_per_unit, notification


@pytest.mark.django_db(transaction=True)
def test_database_error_after_the_order_update_rolls_everything_back(order_factory, post_notification, monkeypatch):
    order = order_factory(quantities=(1, 2))
    record = orders.services.notifications._record
    reached = []

    def record_fails(outcome, **kwargs):
        # By now the order row says PAID and its units exist, in the open transaction.
        reached.append(
            (
                Order.objects.values_list("status", flat=True).get(pk=order.pk),
                Delivery.objects.filter(order=order).count(),
            )
        )
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(orders.services.notifications, "_record", record_fails)
    response = post_notification(notification(order))

    assert reached == [("paid", 3)]
    assert response.status_code == 503
    assert response.content != b"OK"  # the bank retries
    assert Order.objects.values_list("status", flat=True).get(pk=order.pk) == "new"
    assert not Delivery.objects.filter(order=order).exists()
    assert not PaymentNotification.objects.exists()
    assert not MockLedgerEntry.objects.exists()  # the delivery task was never queued

    monkeypatch.setattr(orders.services.notifications, "_record", record)
    retried = post_notification(notification(order))

    assert retried.status_code == 200 and retried.content == b"OK"
    assert Order.objects.values_list("status", flat=True).get(pk=order.pk) == "fulfilled"
    assert delivered_per_unit() == {key: 1 for key in Delivery.objects.values_list("unit_key", flat=True)}
    assert PaymentNotification.objects.get().verdict == "applied"
