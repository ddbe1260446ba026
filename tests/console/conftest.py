"""Fixtures of the console tests: orders in the states the dashboard and the order page care about."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus
from orders.models import Order


@pytest.fixture
def failed_order(paid_order_factory):
    """A PAID order of 800.00 ₽ whose first unit is delivered and second FAILED for good."""
    order = paid_order_factory(quantities=(1, 1), price=40000, recipient="087800001232", email="anna@example.com")
    first, second = Delivery.objects.filter(order=order).order_by("pk")
    Delivery.objects.filter(pk=first.pk).update(status=DeliveryStatus.DELIVERED, serial="VOUCHER-1111")
    Delivery.objects.filter(pk=second.pk).update(
        status=DeliveryStatus.FAILED, failure_scope="permanent", last_code="02", last_message="Wrong number."
    )
    return order


@pytest.fixture
def old_paid_order(paid_order_factory, settings):
    """A PAID order, units still waiting, paid longer ago than ORDER_PAID_TOO_LONG_MINUTES."""
    order = paid_order_factory()
    Order.objects.filter(pk=order.pk).update(
        paid_at=timezone.now() - timedelta(minutes=settings.ORDER_PAID_TOO_LONG_MINUTES + 5)
    )
    order.refresh_from_db()
    return order
