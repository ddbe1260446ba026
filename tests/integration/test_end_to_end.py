"""From a signed T-Bank notification to a FULFILLED order, through gunicorn, Redis and a Celery
worker process: the path every paid order takes in production."""

import time

import pytest

from fulfillment.models import DeliveryAttempt
from orders.models import NotificationVerdict, PaymentNotification
from tests.integration.conftest import assert_delivered_exactly_once, wait_for_orders

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_signed_notification_to_fulfilled_through_a_worker_process(stack, order_factory, report):
    order = order_factory(quantities=(1, 2))
    worker = stack.start_worker(concurrency=4)
    web = stack.start_web()
    started = time.monotonic()

    response = web.notify(order)

    assert response.status_code == 200 and response.text == "OK", response.text
    wait_for_orders([order.pk], "fulfilled", timeout=60)
    book = assert_delivered_exactly_once([order.pk])
    assert book.entries == 3
    attempts = DeliveryAttempt.objects.filter(order=order)
    assert attempts.count() == 3
    # The purchases were made by the worker process, not by the web server or this test.
    assert {attempt.worker.split(":")[1] for attempt in attempts} == {str(worker.pid)}
    assert PaymentNotification.objects.get(order=order).verdict == NotificationVerdict.APPLIED
    report(
        orders=1,
        units=3,
        ledger_deliveries=sum(book.delivered_per_unit.values()),
        seconds=round(time.monotonic() - started, 1),
    )
