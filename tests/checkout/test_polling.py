"""GetState polling: a lost notification no longer loses a paid order."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from orders.models import NotificationSource, NotificationVerdict, Payment, PaymentNotification
from orders.services import order_mark_paid, payment_notification_process
from orders.services.checkout import order_payment_start
from orders.services.polling import payments_poll
from tests.conftest import notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def started(bank, order_factory, settings):
    """started(n) -> n NEW orders with a payment at the fake bank, old enough to be polled."""
    settings.PAYMENT_POLL_AFTER_SECONDS = 300
    settings.PAYMENT_POLL_EVERY_SECONDS = 300

    def make(n: int = 1):
        orders = []
        for _ in range(n):
            order = order_factory(quantities=(1,), price=15000)
            order_payment_start(order=order)
            orders.append(order)
        Payment.objects.update(created_at=timezone.now() - timedelta(minutes=10))
        return orders

    return make


def test_a_lost_confirmed_is_applied_by_polling_with_the_same_audit_record(bank, started, queued_deliveries):
    (order,) = started()
    payment = Payment.objects.get(order=order)
    bank.pay(payment.payment_id, notify=False)  # paid; the notification never arrives

    report = payments_poll()

    order.refresh_from_db()
    assert order.status == "paid" and order.payment_id == payment.payment_id
    assert report.asked == 1 and report.applied == [payment.payment_id]
    record = PaymentNotification.objects.get(order=order)
    assert record.source == NotificationSource.POLLING and record.verdict == NotificationVerdict.APPLIED
    assert record.bank_status == "CONFIRMED" and record.amount_kopecks == 15000
    assert "Token" not in record.raw_body or "***" in record.raw_body
    payment.refresh_from_db()
    assert payment.bank_status == "CONFIRMED" and payment.last_polled_at is not None
    # The late notification, should it come, is a duplicate: the order is not paid twice.
    late = notification(order, PaymentId=int(payment.payment_id), Amount=15000)
    outcome = payment_notification_process(body=json.dumps(late).encode())
    assert outcome.http_status == 200 and outcome.verdict == NotificationVerdict.DUPLICATE


@pytest.mark.parametrize("status", ["DEADLINE_EXPIRED", "REJECTED", "CANCELED", "AUTH_FAIL"])
def test_an_expired_or_rejected_payment_cancels_the_order(bank, started, status):
    (order,) = started()
    payment = Payment.objects.get(order=order)
    bank.payments[payment.payment_id].status = status
    payments_poll()
    order.refresh_from_db()
    assert order.status == "cancelled"
    assert PaymentNotification.objects.get(order=order).source == NotificationSource.POLLING


def test_a_payment_still_new_is_left_alone_and_not_asked_again_too_soon(bank, started):
    (order,) = started()
    Payment.objects.update(expires_at=timezone.now() - timedelta(minutes=1))  # past the link's life: the bank decides
    assert payments_poll().asked == 1
    assert payments_poll().asked == 0  # polled a moment ago
    order.refresh_from_db()
    assert order.status == "new" and not PaymentNotification.objects.exists()
    assert len(bank.calls("GetState")) == 1


def test_young_payments_and_settled_orders_are_not_polled(bank, started, order_factory):
    (order,) = started()
    young = order_factory()
    order_payment_start(order=young)
    order_mark_paid(order_id=order.pk, payment_id=Payment.objects.get(order=order).payment_id)  # notified
    assert payments_poll().asked == 0 and not bank.calls("GetState")


def test_a_run_asks_at_most_the_batch(bank, started, settings):
    settings.PAYMENT_POLL_BATCH = 2
    started(3)
    assert payments_poll().asked == 2
    assert payments_poll().asked == 1
    assert payments_poll().asked == 0


def test_no_transaction_is_open_during_the_getstate_call(bank, started, monkeypatch):
    started()
    from orders.tbank.client import TBankClient

    seen = []
    real = TBankClient.get_state

    def spy(self, **kwargs):
        seen.append(connection.in_atomic_block)
        return real(self, **kwargs)

    monkeypatch.setattr(TBankClient, "get_state", spy)
    payments_poll()
    # pytest-django wraps each test in a transaction; inside it, polling opens none of its own.
    assert seen == [connection.in_atomic_block] and len(connection.savepoint_ids) == 0


def test_a_bank_outage_leaves_the_order_for_the_next_run(bank, started):
    from tests.fakes.tbank_server import Fault

    (order,) = started()
    bank.inject("GetState", Fault("http500"))
    assert payments_poll().applied == []
    order.refresh_from_db()
    assert order.status == "new"
