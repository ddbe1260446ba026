"""Whatever arrives twice is delivered once: duplicate notifications from many clients at once,
and every way of starting a delivery (webhook, admin retry, `manage.py fulfill_order`, a second
claimant) racing on the same orders."""

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db.models import Count

from fulfillment.models import AttemptKind, DeliveryAttempt
from fulfillment.providers.mock import MockProvider
from fulfillment.services import fulfill_order
from orders.models import NotificationVerdict, PaymentNotification
from orders.services import order_mark_paid
from tests.conftest import notification
from tests.integration.conftest import assert_delivered_exactly_once, run_threads, units_of, wait_for_orders

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_duplicate_notification_storm_delivers_each_unit_once(stack, order_factory, report):
    orders = [order_factory(quantities=(1, 2)) for _ in range(100)]
    order_ids = [order.pk for order in orders]
    # Reconciliation runs every second and re-queues anything waiting over 2 s: duplicate task
    # messages on top of the duplicate notifications.
    stack.start_worker(concurrency=8, beat=True, FULFILLMENT_STALE_AFTER_SECONDS=2)
    web = stack.start_web()
    bodies = [notification(order) for order in orders for _ in range(10)]
    random.Random(4).shuffle(bodies)
    local = threading.local()

    def send(body: dict) -> tuple[int, str]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = web.post_notification(body, session=local.session)
        return response.status_code, response.text

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, bodies, timeout=120))
    wait_for_orders(order_ids, "fulfilled", timeout=120)
    seconds = time.monotonic() - started

    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: 1000}, f"answers by HTTP status: {dict(statuses)}"
    assert {text for _, text in answers} == {"OK"}
    verdicts = Counter(PaymentNotification.objects.values_list("verdict", flat=True))
    assert verdicts == {NotificationVerdict.APPLIED: 100, NotificationVerdict.DUPLICATE: 900}
    book = assert_delivered_exactly_once(order_ids)
    units = units_of(order_ids)
    assert units == 300
    assert book.entries == units
    # Claims kept every duplicate task away from units already in hand: one provider call per unit.
    assert DeliveryAttempt.objects.count() == units
    report(
        orders=100,
        units=units,
        notifications=len(answers),
        http_5xx=sum(n for status, n in statuses.items() if status >= 500),
        ledger_deliveries=sum(book.delivered_per_unit.values()),
        seconds=round(seconds, 1),
    )


def test_webhook_admin_retry_and_command_racing_deliver_each_unit_once(stack, order_factory, settings, report):
    from django.contrib.auth.models import User

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]  # what the server checks
    User.objects.create_superuser("staff", "staff@example.com", "race-password-123")
    orders = [order_factory(quantities=(3,)) for _ in range(8)]
    order_ids = [order.pk for order in orders]
    # Slow purchases and few worker threads: every actor finds orders still in progress.
    slow = {"MOCK_FULFILLMENT_DELAY_MIN": "1.2", "MOCK_FULFILLMENT_DELAY_MAX": "1.6"}
    worker = stack.start_worker(concurrency=2, **slow)
    web = stack.start_web(**slow)
    admin = requests.Session()
    admin.headers["Accept-Language"] = "en"  # the shop defaults to Russian; this staff member reads English
    admin.get(web.url + "/admin/login/", timeout=10)
    login = admin.post(
        web.url + "/admin/login/?next=/admin/",
        data={"username": "staff", "password": "race-password-123", "csrfmiddlewaretoken": admin.cookies["csrftoken"]},
        timeout=30,
    )
    assert login.status_code == 200 and "Log out" in login.text, "admin login failed"
    started = time.monotonic()
    for order in orders:
        assert web.notify(order).status_code == 200

    def admin_retry() -> list[bool]:
        codes = []
        for _ in range(3):
            page = admin.get(web.url + "/admin/orders/order/", timeout=30)
            answer = admin.post(
                web.url + "/admin/orders/order/",
                data={
                    "action": "retry_fulfillment",
                    "_selected_action": [str(pk) for pk in order_ids],
                    "index": "0",
                    "csrfmiddlewaretoken": admin.cookies["csrftoken"],
                },
                headers={"Referer": page.url},
                timeout=60,
            )
            # The action redirects back to the list, which shows what it queued or skipped.
            redirected = [r.status_code for r in answer.history] == [302] and answer.status_code == 200
            codes.append(redirected and ("Queued" in answer.text or "Skipped" in answer.text))
            time.sleep(0.5)
        return codes

    def duplicate_webhooks() -> list[int]:
        return [web.notify(order).status_code for order in orders for _ in range(2)]

    commands = [stack.manage(f"cmd{n}", "fulfill_order", *map(str, order_ids), **slow) for n in (1, 2)]
    admin_codes, webhook_codes = run_threads([admin_retry, duplicate_webhooks], timeout=120)
    for command in commands:
        command.popen.wait(timeout=120)
    wait_for_orders(order_ids, "fulfilled", timeout=120)
    seconds = time.monotonic() - started

    assert admin_codes == [True, True, True], "the admin action did not run"
    assert set(webhook_codes) == {200}
    for command in commands:
        # 0: delivered what it claimed; 1: some units were in another worker's hands; 2: it started
        # so late that an order was already fulfilled, and it refused to run. Never a crash.
        assert command.popen.returncode in (0, 1, 2), command.log()
        assert command.popen.returncode != 2 or "already fulfilled" in command.log(), command.log()
        assert "Traceback" not in command.log()
    book = assert_delivered_exactly_once(order_ids)
    attempts = DeliveryAttempt.objects.filter(order_id__in=order_ids)
    # Exactly one provider call per unit: no actor called the provider for a unit another held.
    assert attempts.count() == units_of(order_ids) == 24
    assert set(attempts.values_list("kind", flat=True)) == {AttemptKind.PURCHASE}
    by_pid = Counter(attempt.split(":")[1] for attempt in attempts.values_list("worker", flat=True))
    actors = {str(worker.pid): "worker", **{str(c.pid): c.name for c in commands}}
    by_actor = {actors.get(pid, f"pid{pid}"): n for pid, n in by_pid.items()}
    # The race really happened: the commands delivered some of the units, not only the worker.
    assert by_actor.get("worker", 0) < 24, by_actor
    report(
        orders=len(order_ids),
        units=24,
        ledger_deliveries=sum(book.delivered_per_unit.values()),
        provider_calls=attempts.count(),
        units_by_actor=",".join(f"{name}:{n}" for name, n in sorted(by_actor.items())),
        seconds=round(seconds, 1),
    )


def test_a_unit_is_claimed_by_one_runner_at_a_time(order_factory, monkeypatch, report):
    """Two fulfill_order runs on the same order at the same instant: each unit is claimed by one
    of them (SKIP LOCKED + claim token); the other skips it, so each unit is bought once."""
    from fulfillment.tasks import deliver_order

    monkeypatch.setattr(deliver_order, "delay", lambda order_id: None)  # the two runs below are the workers
    order = order_factory(quantities=(2, 2))
    order_mark_paid(order_id=order.pk, payment_id="1")
    provider = MockProvider(delay_min=0.3, delay_max=0.3)

    reports = run_threads([lambda: fulfill_order(order.pk, provider=provider)] * 2, timeout=60)

    unit_sets = [[unit.unit_key for unit in r.units] for r in reports]
    first, second = (set(units) for units in unit_sets)
    assert not first & second, "a unit was processed by both runs"
    assert len(first | second) == sum(map(len, unit_sets)) == 4
    order.refresh_from_db()
    assert order.status == "fulfilled"
    assert_delivered_exactly_once([order.pk])
    assert DeliveryAttempt.objects.values("delivery").annotate(n=Count("id")).filter(n__gt=1).count() == 0
    report(orders=1, units=4, claimants=2, units_per_claimant=",".join(str(len(s)) for s in unit_sets))


def test_a_retry_reset_and_a_run_recording_a_result_do_not_deadlock(order_factory, monkeypatch):
    """The interleaving that once aborted one side with a deadlock: a run has recorded a unit's
    answer (its attempt row references the order, checked at COMMIT with a key-share lock on the
    order) while a staff retry holds the order locked and waits on that unit. The retry's order
    lock must not conflict with the key-share lock, so both finish."""
    from django.db import connection as main_connection
    from django.utils import timezone

    from fulfillment.models import Delivery, DeliveryStatus
    from fulfillment.providers.base import FulfillmentResult
    from fulfillment.services import delivery_record_result, order_fulfillment_reset_for_retry
    from fulfillment.tasks import deliver_order

    monkeypatch.setattr(deliver_order, "delay", lambda order_id: None)
    order = order_factory(quantities=(2,))
    order_mark_paid(order_id=order.pk, payment_id="1")
    unit = Delivery.objects.filter(order_id=order.pk).order_by("unit_index").first()
    Delivery.objects.filter(pk=unit.pk).update(status=DeliveryStatus.SENDING, claim_token="run")
    unit.refresh_from_db()
    recorded, retry_pid = threading.Event(), []

    def run_records_its_answer() -> None:
        from django.db import connection, transaction

        with transaction.atomic():
            delivery_record_result(
                unit=unit,
                result=FulfillmentResult.delivered(serial="SN-1"),
                kind=AttemptKind.PURCHASE,
                provider_name="mock",
                claim_token="run",
                started_at=timezone.now(),
                duration_ms=1,
            )
            recorded.set()
            # Commit only once the retry waits on the unit this transaction updated.
            deadline = time.monotonic() + 20
            with connection.cursor() as cursor:
                while time.monotonic() < deadline:
                    if retry_pid:
                        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [retry_pid[0]])
                        row = cursor.fetchone()
                        if row and row[0] == "Lock":
                            break
                    time.sleep(0.02)
                else:
                    raise AssertionError("the retry never waited on the unit")

    def staff_retries() -> object:
        from django.db import connection

        assert recorded.wait(20), "the run never recorded its answer"
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            retry_pid.append(cursor.fetchone()[0])
        return order_fulfillment_reset_for_retry(order_id=order.pk)

    assert main_connection.vendor == "postgresql"
    _, decision = run_threads([run_records_its_answer, staff_retries], timeout=60)

    assert decision.queued  # the second unit is still to deliver
    unit.refresh_from_db()
    assert unit.status == DeliveryStatus.DELIVERED and unit.serial == "SN-1"
    assert Delivery.objects.filter(order_id=order.pk).count() == 2
    assert DeliveryAttempt.objects.filter(delivery=unit).count() == 1
