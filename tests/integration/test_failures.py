"""Whatever crashes, stalls or is lost, a paid order is delivered, and no unit twice: a worker
killed mid-delivery, a provider that fails or stops answering for a while, a task message the
broker lost, and the database connection dying in the middle of a payment notification."""

import socket
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import psycopg
import pytest
from django.db.models import Count

from fulfillment.models import AttemptKind, Delivery, DeliveryAttempt, DeliveryStatus, MockLedgerEntry
from orders.models import Order, PaymentNotification
from tests.conftest import notification
from tests.integration.conftest import (
    assert_delivered_exactly_once,
    delivery_status_counts,
    free_port,
    ledger,
    run_threads,
    units_of,
    wait_for_orders,
    wait_until,
)
from tests.integration.providers import CALLS_KEY, DOWN_UNTIL_KEY

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def pay_all(web, orders, *, clients: int = 10) -> None:
    def pay(chunk):
        return [web.notify(order).status_code for order in chunk]

    chunks = [orders[n::clients] for n in range(clients)]
    codes = [code for result in run_threads([lambda c=c: pay(c) for c in chunks], timeout=120) for code in result]
    assert set(codes) == {200}, codes


def test_worker_killed_mid_delivery_is_recovered_without_buying_twice(stack, order_factory, report):
    orders = [order_factory() for _ in range(200)]
    order_ids = [order.pk for order in orders]
    # Slow purchases, short claims: a unit held by a dead worker is free again after 4 s.
    env = {
        "MOCK_FULFILLMENT_DELAY_MIN": "1.0",
        "MOCK_FULFILLMENT_DELAY_MAX": "2.0",
        "FULFILLMENT_CLAIM_SECONDS": "4",
        "FULFILLMENT_STALE_AFTER_SECONDS": "8",
    }
    first = stack.start_worker("w1", concurrency=24, **env)
    web = stack.start_web()
    started = time.monotonic()
    pay_all(web, orders)
    wait_until(
        lambda: (
            Delivery.objects.filter(order_id__in=order_ids, status=DeliveryStatus.DELIVERED).count() >= 30
            and Delivery.objects.filter(order_id__in=order_ids, status=DeliveryStatus.SENDING).count() >= 5
        ),
        timeout=60,
        what="the first worker to be in the middle of its work",
    )

    first.kill()  # SIGKILL: no shutdown, no acknowledgement, provider calls cut off mid-way
    first.popen.wait(timeout=10)
    orphans = dict(
        Delivery.objects.filter(order_id__in=order_ids, status=DeliveryStatus.SENDING).values_list("pk", "reference")
    )
    delivered_before = Delivery.objects.filter(order_id__in=order_ids, status=DeliveryStatus.DELIVERED).count()
    assert orphans, "the kill should leave units the dead worker was sending"
    stack.start_worker("w2", concurrency=24, beat=True, **env)
    wait_for_orders(order_ids, "fulfilled", timeout=150)
    seconds = time.monotonic() - started

    book = assert_delivered_exactly_once(order_ids)
    assert book.entries == 200
    # Each unit the dead worker was sending kept its reference and was re-checked with it, never
    # bought under a new one; the Mock supplier resolved the re-check from its ledger or bought it
    # then, the purchase never having arrived.
    after = dict(Delivery.objects.filter(pk__in=orphans).values_list("pk", "reference"))
    assert after == orphans
    orphan_attempts = DeliveryAttempt.objects.filter(delivery_id__in=orphans)
    assert set(orphan_attempts.values_list("kind", flat=True)) == {AttemptKind.CHECK}
    assert orphan_attempts.count() == len(orphans)
    assert not Delivery.objects.filter(order_id__in=order_ids, purchase_no__gt=1).exists()
    report(
        orders=200,
        units=units_of(order_ids),
        delivered_before_kill=delivered_before,
        in_flight_at_kill=len(orphans),
        ledger_deliveries=sum(book.delivered_per_unit.values()),
        seconds=round(seconds, 1),
    )


def _backoff_floor(attempt: int, *, base: float, cap: float) -> float:
    """The shortest wait fulfillment.services._backoff can draw after attempt number `attempt`."""
    return min(cap, base * 2 ** max(0, attempt - 1)) / 2


@pytest.mark.parametrize("mode", ["fail", "timeout"])
def test_provider_outage_then_recovery_delivers_once_without_a_retry_storm(
    stack, order_factory, report, mode, settings
):
    """`fail`: the supplier answers "unavailable" (retryable) for 4 s. `timeout`: it answers nothing
    for 4 s, and half of those purchases did go through. Afterwards it works again."""
    max_attempts, base, cap, outage = 8, 0.5, 2.0, 4.0
    settings.FULFILLMENT_PROVIDER = "flaky"  # the items are sold with the provider the worker uses
    orders = [order_factory(quantities=(2,)) for _ in range(15)]
    order_ids = [order.pk for order in orders]
    stack.start_worker(
        concurrency=8,
        beat=True,
        FULFILLMENT_PROVIDER="flaky",
        FLAKY_MODE=mode,
        FULFILLMENT_MAX_PURCHASE_ATTEMPTS=max_attempts,
        FULFILLMENT_RETRY_BASE_SECONDS=base,
        FULFILLMENT_RETRY_MAX_SECONDS=cap,
    )
    web = stack.start_web(FULFILLMENT_PROVIDER="flaky", FLAKY_MODE=mode)
    down_until = time.time() + outage
    stack.redis.set(DOWN_UNTIL_KEY, down_until)
    started = time.monotonic()
    pay_all(web, orders, clients=5)
    wait_for_orders(order_ids, "fulfilled", timeout=90)
    seconds = time.monotonic() - started

    units = units_of(order_ids)
    assert units == 30
    book = assert_delivered_exactly_once(order_ids)
    attempts = DeliveryAttempt.objects.filter(order_id__in=order_ids).order_by("delivery_id", "started_at")
    provider_calls = int(stack.redis.get(CALLS_KEY))
    assert provider_calls == attempts.count(), "every provider call must leave a DeliveryAttempt"
    by_unit = defaultdict(list)
    for attempt in attempts:
        by_unit[attempt.delivery_id].append(attempt)
    assert len(by_unit) == units
    # The outage was real: every unit's first call fell into it.
    assert all(calls[0].outcome != "delivered" for calls in by_unit.values())

    if mode == "fail":
        assert book.failed_entries == 0  # "unavailable" means nothing was bought
        assert book.entries == units
        for calls in by_unit.values():
            assert {c.kind for c in calls} == {AttemptKind.PURCHASE}
            assert len(calls) <= max_attempts
            # Each retry is a new purchase (the old reference failed for good) ...
            assert len({c.reference for c in calls}) == len(calls)
            # ... and waited out its backoff: no retry storm while the provider is down.
            for number, (previous, following) in enumerate(zip(calls, calls[1:]), start=1):
                wait = (following.started_at - previous.finished_at).total_seconds()
                assert wait >= _backoff_floor(number, base=base, cap=cap), (number, wait)
        assert provider_calls <= units * max_attempts
    else:
        # An unknown outcome is never bought again: one purchase per unit, then checks with the
        # same reference, spaced by the pending backoff (at least cap/2 here).
        assert not Delivery.objects.filter(order_id__in=order_ids, purchase_no__gt=1).exists()
        check_floor = _backoff_floor(1, base=15.0, cap=cap)
        for calls in by_unit.values():
            assert [c.kind for c in calls[:1]] == [AttemptKind.PURCHASE]
            assert {c.kind for c in calls[1:]} <= {AttemptKind.CHECK}
            assert len({c.reference for c in calls}) == 1
            for previous, following in zip(calls, calls[1:]):
                assert (following.started_at - previous.finished_at).total_seconds() >= check_floor
        assert provider_calls <= units * (1 + int(seconds / check_floor) + 1)
        assert all(calls[0].code == "exception" and calls[-1].kind == AttemptKind.CHECK for calls in by_unit.values())
        # The hard case happened: purchases that went through while their answer was lost were
        # found by the re-check with the same reference, not bought again.
        bought_blind = MockLedgerEntry.objects.filter(
            created_at__lt=datetime.fromtimestamp(down_until, tz=UTC), outcome="delivered"
        ).count()
        assert 0 < bought_blind < units
    report(
        mode=mode,
        orders=len(order_ids),
        units=units,
        outage_seconds=outage,
        provider_calls=provider_calls,
        max_calls_per_unit=max(len(calls) for calls in by_unit.values()),
        **({"bought_while_unanswered": bought_blind} if mode == "timeout" else {}),
        ledger_deliveries=sum(book.delivered_per_unit.values()),
        seconds=round(seconds, 1),
    )


def test_lost_task_message_is_delivered_by_reconciliation(stack, order_factory, report):
    orders = [order_factory(quantities=(1, 2)) for _ in range(5)]
    order_ids = [order.pk for order in orders]
    web = stack.start_web()  # no worker yet: the messages wait in Redis
    for order in orders:
        assert web.notify(order).status_code == 200
    assert stack.queue_length() == len(orders), "one deliver_order message per paid order"

    stack.redis.flushdb()  # the broker loses every message
    assert stack.queue_length() == 0
    started = time.monotonic()
    worker = stack.start_worker(beat=True, FULFILLMENT_STALE_AFTER_SECONDS=2)
    wait_for_orders(order_ids, "fulfilled", timeout=60)
    seconds = time.monotonic() - started

    book = assert_delivered_exactly_once(order_ids)
    assert book.entries == units_of(order_ids) == 15
    assert worker.count(r"Reconciliation queued") >= 1
    # Sweeps every second, yet Celery said nothing about them: only the sweep that found work logged.
    assert worker.count(r"Sending due task|reconcile_paid_orders\[") == 0
    report(
        orders=5,
        units=15,
        lost_messages=5,
        ledger_deliveries=sum(book.delivered_per_unit.values()),
        seconds=round(seconds, 1),
    )


def test_broker_down_at_payment_still_answers_ok_and_delivers_once_it_is_back(stack, order_factory, report):
    """The web server cannot reach Redis when the payment arrives: the payment is committed, so
    the bank gets OK (not a 500 for a notification that was applied), and reconciliation queues
    the delivery at its next sweep once a broker is reachable, not after the stale window."""
    orders = [order_factory(quantities=(2,)) for _ in range(3)]
    order_ids = [order.pk for order in orders]
    web = stack.start_web(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there

    answers = [web.notify(order) for order in orders]

    assert [(answer.status_code, answer.text) for answer in answers] == [(200, "OK")] * 3
    assert set(Order.objects.filter(pk__in=order_ids).values_list("status", flat=True)) == {"paid"}
    assert web.proc.count("Could not queue the delivery of order") == 3
    started = time.monotonic()
    worker = stack.start_worker(beat=True, FULFILLMENT_STALE_AFTER_SECONDS=300)
    wait_for_orders(order_ids, "fulfilled", timeout=60)

    book = assert_delivered_exactly_once(order_ids)
    assert worker.count(r"Reconciliation queued") >= 1
    report(
        orders=3,
        units=6,
        answers_ok=len(answers),
        ledger_deliveries=sum(book.delivered_per_unit.values()),
        seconds=round(time.monotonic() - started, 1),
    )


@pytest.fixture
def stalled_broker():
    """A port that accepts connections and never answers: Redis behind a dead NAT or mid-failover."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()
    for conn in held:
        conn.close()


def test_stalled_broker_at_payment_does_not_hang_the_webhook(stack, order_factory, stalled_broker, report):
    """Redis accepts the connection but never answers: the publish gives up after its socket
    timeout, the bank gets OK for the stored payment, and reconciliation delivers it later."""
    order = order_factory(quantities=(2,))
    web = stack.start_web(CELERY_BROKER_URL=stalled_broker, CELERY_BROKER_SOCKET_TIMEOUT=1)

    answer = web.notify(order, timeout=20)  # without a socket timeout this waited forever

    assert (answer.status_code, answer.text) == (200, "OK")
    assert web.proc.count("Could not queue the delivery of order") == 1
    stack.start_worker(beat=True, FULFILLMENT_STALE_AFTER_SECONDS=300)
    wait_for_orders([order.pk], "fulfilled", timeout=60)
    book = assert_delivered_exactly_once([order.pk])
    report(orders=1, units=2, answer=answer.status_code, ledger_deliveries=sum(book.delivered_per_unit.values()))


def test_database_connection_killed_mid_notification_answers_non_ok_and_writes_nothing(stack, order_factory, report):
    order = order_factory(quantities=(2,))
    stack.start_worker()
    web = stack.start_web(name="web")
    conninfo = stack.db_url.replace("postgres://", "postgresql://", 1)
    body = notification(order)
    answers = []
    with psycopg.connect(conninfo) as locker, psycopg.connect(conninfo, autocommit=True) as dba:
        # Hold the audit table so the notification stops right before its last write, with the
        # order already updated and its units inserted in the open transaction.
        locker.execute(f"LOCK TABLE {PaymentNotification._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        sender = threading.Thread(target=lambda: answers.append(web.post_notification(body)), daemon=True)
        sender.start()

        def blocked_backend():
            row = dba.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'it-web' "
                "AND wait_event_type = 'Lock'",
                (stack.db_name,),
            ).fetchone()
            return row and row[0]

        pid = wait_until(blocked_backend, timeout=30, what="the notification to block on the audit table")
        held = {
            name
            for (name,) in dba.execute(
                "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = %s AND l.mode = 'RowExclusiveLock'",
                (pid,),
            )
        }
        assert {Order._meta.db_table, Delivery._meta.db_table} <= held, held
        dba.execute("SELECT pg_terminate_backend(%s)", (pid,))
        sender.join(timeout=30)
        locker.rollback()

    assert len(answers) == 1
    assert answers[0].status_code == 503 and answers[0].text != "OK"
    order.refresh_from_db()
    assert order.status == "new"
    assert not Delivery.objects.filter(order=order).exists()
    assert not PaymentNotification.objects.filter(order_ref=order.public_id).exists()
    assert stack.queue_length() == 0 and ledger().entries == 0

    # The bank sends the notification again; now it is processed normally.
    retried = wait_until(
        lambda: (lambda r: r if r.status_code == 200 else None)(web.post_notification(body)),
        timeout=30,
        interval=0.5,
        what="the retried notification to be accepted",
    )
    assert retried.text == "OK"
    wait_for_orders([order.pk], "fulfilled", timeout=60)
    assert_delivered_exactly_once([order.pk])
    assert PaymentNotification.objects.filter(order=order).values("verdict").annotate(n=Count("id")).get()["n"] == 1
    report(orders=1, units=2, first_answer=answers[0].status_code, retried_answer=retried.status_code)
    assert delivery_status_counts([order.pk]) == {"delivered": 2}
