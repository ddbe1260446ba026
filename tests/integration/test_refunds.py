"""Refunds with real processes on PostgreSQL + Redis: 100 paid orders of 3 units, one unit of each
refused permanently by the provider, a worker SIGKILLed in the middle. Every order must end with
exactly one Cancel for exactly its undeliverable unit's price, no refunded unit delivered, and the
bank's notifications of those refunds recognised as ours.

The fake T-Bank runs in the test process; the workers reach it through TBANK_API_URL, and it
notifies the gunicorn web server (the payment, then each refund) like the real bank would.
"""

import time
from collections import Counter

import pytest
from django.conf import settings

from fulfillment.models import Delivery, DeliveryStatus, MockLedgerEntry
from orders.models import NotificationVerdict, Order, PaymentNotification, Refund
from orders.refund_state import RefundState
from orders.services import ItemSpec, order_create
from tests.conftest import WEBHOOK_URL
from tests.fakes.tbank_server import FakePayment, FakeTBank, Fault
from tests.integration.conftest import delivery_status_counts, run_threads, wait_for_orders, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ORDERS = 100


def test_undeliverable_units_are_refunded_once_each_through_a_worker_kill(stack, product_factory, report):
    regular = product_factory(price_kopecks=10000)
    orders, refused_price = [], {}
    for n in range(ORDERS):
        odd = product_factory(price_kopecks=5000 + 10 * n)  # a distinct price per order: amounts are checkable
        order = order_create(
            items=[
                ItemSpec(product=regular, recipient="0811", quantity=2),
                ItemSpec(product=odd, recipient=f"FAIL-{n}"),
            ],
            customer_email=f"buyer{n}@example.com",
        )
        orders.append(order)
        refused_price[order.public_id] = odd.price_kopecks
    order_ids = [order.pk for order in orders]

    with FakeTBank(terminal_key=settings.TBANK_TERMINAL_KEY, password=settings.TBANK_PASSWORD) as bank:
        env = {
            "TBANK_API_URL": bank.api_url,
            "TBANK_TIMEOUT_SECONDS": "5",
            "REFUND_POLICY": "auto",
            "REFUND_CLAIM_SECONDS": "4",
            "REFUND_CHECK_INTERVAL_SECONDS": "1",
            "MOCK_FULFILLMENT_FAIL_RECIPIENTS": "FAIL-*",
            "MOCK_FULFILLMENT_DELAY_MIN": "0.1",
            "MOCK_FULFILLMENT_DELAY_MAX": "0.3",
            "FULFILLMENT_CLAIM_SECONDS": "4",
            "FULFILLMENT_STALE_AFTER_SECONDS": "8",
        }
        web = stack.start_web(**env)
        first = stack.start_worker("w1", concurrency=16, **env)
        for number, order in enumerate(orders):
            payment_id = str(7300000000 + number)
            bank.payments[payment_id] = FakePayment(
                payment_id=payment_id,
                order_id=order.public_id,
                amount=order.amount_kopecks,
                notification_url=web.url + WEBHOOK_URL,
                receipt={"Items": [], "Email": order.customer_email, "Taxation": "usn_income"},
            )
        # Every Cancel answers after 1.5 s (the refund is made at once), and the bank holds its
        # notifications until after the kill, so refunds stay SENDING until their answer comes:
        # the kill is sure to find some in flight, whatever the machine's speed.
        bank.notify_on_cancel = False
        for _ in range(2 * ORDERS):
            bank.inject("Cancel", Fault("lose_answer", delay=1.5))
        started = time.monotonic()

        def pay(chunk):
            return [status for payment_id in chunk for status, _ in bank.pay(payment_id)]

        ids = list(bank.payments)
        codes = run_threads([lambda c=ids[n::8]: pay(c) for n in range(8)], timeout=120)
        assert {code for chunk in codes for code in chunk} == {200}

        wait_until(
            lambda: Refund.objects.filter(state=RefundState.SENDING).count() >= 3,
            timeout=60,
            what="the first worker to be sending some refunds",
            on_timeout=lambda: f"units {delivery_status_counts(order_ids)}",
        )
        first.kill()  # SIGKILL mid-run: deliveries and refunds in flight are cut off
        first.popen.wait(timeout=10)
        in_flight = Refund.objects.exclude(state=RefundState.SUCCEEDED).count()
        sending = Refund.objects.filter(state=RefundState.SENDING).count()
        # The bank's late notifications of what it refunded so far, then notifications as usual.
        with bank._lock:
            bank.notify_on_cancel = True
            refunded_so_far = [payment for payment in bank.payments.values() if payment.refunded]
        run_threads(
            [lambda chunk=refunded_so_far[n::4]: [bank.notify(p, p.status) for p in chunk] for n in range(4)],
            timeout=60,
        )
        stack.start_worker("w2", concurrency=16, beat=True, **env)

        wait_for_orders(order_ids, "partially_refunded", timeout=120)
        seconds = time.monotonic() - started
        wait_until(
            lambda: sum(1 for payload, *_ in bank.notifications if payload["Status"] == "PARTIAL_REFUNDED") >= ORDERS,
            timeout=60,
            what="the bank to notify every refund",
        )
        wait_until(
            lambda: PaymentNotification.objects.filter(bank_status="PARTIAL_REFUNDED").count() >= ORDERS,
            timeout=60,
            what="the web server to record every refund notification",
        )
        cancels = bank.calls("Cancel")
        get_states = len(bank.calls("GetState"))
        refunded_at_bank = {payment.order_id: payment.refunded for payment in bank.payments.values()}

    # Exactly one Cancel per order, for exactly the refused unit's price, with its receipt.
    assert len(cancels) == ORDERS, Counter(call["PaymentId"] for call in cancels).most_common(3)
    public_ids = dict(Order.objects.filter(pk__in=order_ids).values_list("payment_id", "public_id"))
    for call in cancels:
        price = refused_price[public_ids[call["PaymentId"]]]
        assert call["Amount"] == price
        assert [(i["Price"], i["Quantity"], i["Amount"]) for i in call["Receipt"]["Items"]] == [(price, 1, price)]
    assert refunded_at_bank == refused_price
    assert len({call["ExternalRequestId"] for call in cancels}) == ORDERS
    assert Refund.objects.filter(state=RefundState.SUCCEEDED).count() == ORDERS == Refund.objects.count()

    # No refunded unit was ever delivered; every other unit was, once.
    assert delivery_status_counts(order_ids) == {"delivered": 2 * ORDERS, "refunded": ORDERS}
    refunded_keys = list(Delivery.objects.filter(status=DeliveryStatus.REFUNDED).values_list("unit_key", flat=True))
    assert not MockLedgerEntry.objects.filter(unit_key__in=refunded_keys, outcome="delivered").exists()
    delivered = Counter(MockLedgerEntry.objects.filter(outcome="delivered").values_list("unit_key", flat=True))
    assert len(delivered) == 2 * ORDERS and set(delivered.values()) == {1}

    # The bank's notifications of our refunds were recognised as ours, never sent to staff.
    verdicts = Counter(
        PaymentNotification.objects.filter(bank_status="PARTIAL_REFUNDED").values_list("verdict", flat=True)
    )
    assert set(verdicts) <= {NotificationVerdict.RECORDED, NotificationVerdict.DUPLICATE}, verdicts
    assert not PaymentNotification.objects.filter(verdict=NotificationVerdict.NEEDS_REVIEW).exists()
    report(
        orders=ORDERS,
        units=3 * ORDERS,
        cancels=len(cancels),
        get_states=get_states,
        refunds_unsettled_at_kill=in_flight,
        refunds_sending_at_kill=sending,
        seconds=f"{seconds:.1f}",
    )
