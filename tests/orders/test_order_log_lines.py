"""Every log line about an order carries its public id (LOG_FORMAT=json): the webhook, the
delivery task and a refund, each captured as JSON lines through the configured formatter."""

from __future__ import annotations

import io
import json
import logging

import pytest

from fulfillment.tasks import deliver_order
from fulfillment_site import logs
from fulfillment_site.logs import JsonFormatter, OrderContextFilter
from orders.models import Order
from orders.tasks import send_refund
from tests.conftest import notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def json_lines():
    """The JSON lines logged at INFO and above while the test runs, parsed."""
    logs.clear_order()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(OrderContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        logs.clear_order()


def test_webhook_lines_carry_the_order_including_djangos_own_answer_line(order_factory, post_notification, json_lines):
    order = order_factory()

    response = post_notification(notification(order, amount=order.amount_kopecks + 1))

    assert response.status_code == 409
    lines = json_lines()
    assert {line["logger"] for line in lines} >= {"orders.views", "django.request"}
    assert [line.get("order") for line in lines] == [order.public_id] * len(lines)
    # The next request starts with nothing bound.
    post_notification(b"not json")
    assert [line.get("order") for line in json_lines()[len(lines) :]] == [None] * (len(json_lines()) - len(lines))


def test_a_paid_notification_whose_delivery_cannot_be_queued_names_the_order(
    order_factory, post_notification, json_lines, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(deliver_order, "delay", broker_down)
    order = order_factory()

    with django_capture_on_commit_callbacks(execute=True):
        assert post_notification(notification(order)).status_code == 200

    lines = [line for line in json_lines() if "Could not queue the delivery" in line["message"]]
    assert len(lines) == 1 and lines[0]["order"] == order.public_id


def test_delivery_task_lines_carry_the_order(paid_order_factory, scripted_provider, json_lines):
    order = paid_order_factory(quantities=(2,))
    scripted_provider.script(order.items.get().sku, RuntimeError("provider exploded"))

    deliver_order.apply(args=[order.pk])

    lines = json_lines()
    assert any("raised for reference" in line["message"] and "provider exploded" in line["exception"] for line in lines)
    assert [line.get("order") for line in lines] == [order.public_id] * len(lines)
    assert all(line["task"] == "fulfillment.deliver_order" for line in lines)
    assert logs.current_order() is None  # nothing stays bound to the thread after the task


def test_refund_lines_carry_the_order(shop, bank, json_lines, django_capture_on_commit_callbacks):
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])

    with django_capture_on_commit_callbacks(execute=True):
        deliver_order.apply(args=[order.pk])

    refund = order.refunds.get()
    send_refund.apply(args=[refund.pk])  # again: nothing to send, still about the order
    lines = json_lines()
    messages = " | ".join(line["message"] for line in lines)
    assert f"Refund {refund.pk} decided" in messages and "succeeded" in messages
    assert [line.get("order") for line in lines] == [order.public_id] * len(lines)
    assert Order.objects.get(pk=order.pk).status == "partially_refunded"
