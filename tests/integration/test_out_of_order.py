"""Notifications that arrive late or out of order: a refund while units are in flight stops
every unit not yet sent; a late AUTHORIZED or REJECTED never takes a paid order back."""

import time

import pytest

from fulfillment.models import Delivery, DeliveryStatus, MockLedgerEntry
from orders.models import NotificationVerdict, Order, PaymentNotification
from tests.integration.conftest import assert_delivered_exactly_once, wait_for_orders, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RECONCILED = r"Task fulfillment\.reconcile_paid_orders\[[^\]]+\] succeeded"


def test_refund_while_units_are_in_flight_sends_no_further_unit(stack, order_factory, report):
    order = order_factory(quantities=(6,))
    slow = {"MOCK_FULFILLMENT_DELAY_MIN": "1.5", "MOCK_FULFILLMENT_DELAY_MAX": "1.5"}
    # Celery's lines about each sweep are this test's clock: turn them on.
    worker = stack.start_worker(concurrency=2, beat=True, CELERY_LOG_PERIODIC_TASKS="true", **slow)
    web = stack.start_web()
    assert web.notify(order).status_code == 200
    wait_until(
        lambda: Delivery.objects.filter(order=order, status=DeliveryStatus.SENDING).exists(),
        timeout=30,
        what="the first unit to be sent",
    )

    refund = web.notify(order, status="REFUNDED")

    assert refund.status_code == 200 and refund.text == "OK"
    # The refund has committed: every unit is either already sent or cancelled, none waits.
    sent_at_refund = set(
        Delivery.objects.filter(order=order).exclude(status=DeliveryStatus.CANCELLED).values_list("unit_key", flat=True)
    )
    assert not Delivery.objects.filter(order=order, status=DeliveryStatus.WAITING).exists()
    assert 1 <= len(sent_at_refund) < 6
    wait_until(
        lambda: (
            not Delivery.objects.filter(
                order=order, status__in=(DeliveryStatus.SENDING, DeliveryStatus.PENDING)
            ).exists()
        ),
        timeout=30,
        what="the units in flight to settle",
    )
    # Give reconciliation two full sweeps to (wrongly) pick anything up again.
    sweeps = worker.count(RECONCILED)
    wait_until(lambda: worker.count(RECONCILED) >= sweeps + 2, timeout=30, what="two reconciliation sweeps")

    order.refresh_from_db()
    assert order.status == "refunded"
    statuses = dict(Delivery.objects.filter(order=order).values_list("unit_key", "status"))
    assert {key for key, status in statuses.items() if status == DeliveryStatus.DELIVERED} == sent_at_refund
    assert {key for key, status in statuses.items() if status != DeliveryStatus.DELIVERED} == set(
        statuses
    ) - sent_at_refund
    assert set(statuses.values()) == {DeliveryStatus.DELIVERED, DeliveryStatus.CANCELLED}
    # Only the units already in flight reached the supplier.
    assert set(MockLedgerEntry.objects.values_list("unit_key", flat=True)) == sent_at_refund
    report(
        units=6,
        sent_before_refund=len(sent_at_refund),
        cancelled=6 - len(sent_at_refund),
        ledger_entries=MockLedgerEntry.objects.count(),
    )


def test_late_authorized_and_failure_statuses_never_downgrade_a_paid_order(stack, order_factory, report):
    orders = [order_factory(quantities=(2,)) for _ in range(3)]
    order_ids = [order.pk for order in orders]
    stack.start_worker(concurrency=4, MOCK_FULFILLMENT_DELAY_MIN="0.5", MOCK_FULFILLMENT_DELAY_MAX="0.5")
    web = stack.start_web()
    late = ["AUTHORIZED", "REJECTED", "DEADLINE_EXPIRED", "CANCELED", "AUTH_FAIL"]
    started = time.monotonic()
    for order in orders:
        assert web.notify(order).status_code == 200
        # While its units are in flight, the earlier stages of the payment arrive late.
        for status in late:
            assert web.notify(order, status=status).text == "OK"
        assert Order.objects.get(pk=order.pk).status in ("paid", "fulfilled")
    wait_for_orders(order_ids, "fulfilled", timeout=60)
    # And once more after delivery.
    for order in orders:
        for status in late:
            assert web.notify(order, status=status).text == "OK"

    assert set(Order.objects.filter(pk__in=order_ids).values_list("status", flat=True)) == {"fulfilled"}
    book = assert_delivered_exactly_once(order_ids)
    verdicts = {
        (bank_status, verdict)
        for bank_status, verdict in PaymentNotification.objects.exclude(bank_status="CONFIRMED").values_list(
            "bank_status", "verdict"
        )
    }
    assert verdicts == {("AUTHORIZED", NotificationVerdict.RECORDED)} | {
        (status, NotificationVerdict.IGNORED) for status in late[1:]
    }
    report(
        orders=3,
        units=6,
        late_notifications=2 * len(late) * len(orders),
        ledger_deliveries=sum(book.delivered_per_unit.values()),
        seconds=round(time.monotonic() - started, 1),
    )


def test_confirmed_after_a_rejection_still_delivers(stack, order_factory, report):
    """The bank is the source of truth for money: a CONFIRMED that arrives after a failure status
    (which cancelled the order) makes it PAID again, and it is delivered once."""
    order = order_factory(quantities=(2,))
    stack.start_worker()
    web = stack.start_web()
    assert web.notify(order, status="REJECTED").text == "OK"
    assert Order.objects.get(pk=order.pk).status == "cancelled"

    assert web.notify(order).text == "OK"
    assert web.notify(order, status="REJECTED").text == "OK"

    wait_for_orders([order.pk], "fulfilled", timeout=60)
    book = assert_delivered_exactly_once([order.pk])
    report(orders=1, units=2, ledger_deliveries=sum(book.delivered_per_unit.values()))
