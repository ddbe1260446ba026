"""A fault that is not the units', with real processes: the shop's deposit runs out while orders
are being paid. Deliveries halt without using any unit's purchase attempts and without calling
the provider again; a partial top-up releases only the units it pays for (oldest first) while the
rest stay held; the periodic account check (Celery beat) lifts the halt once the deposit covers
every unit waiting, and every unit is then delivered exactly once. A purchase left pending before
the halt keeps its own schedule through the lift: never asked about twice within the provider's
minimum interval."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment.models import AttemptKind, Delivery, DeliveryAttempt, DeliveryStatus, ProviderAccount, ProviderHalt
from orders.models import OrderItem
from tests.integration.conftest import assert_delivered_exactly_once, wait_for_orders, wait_until
from tests.integration.providers import (
    BALANCE_KEY,
    CALLS_KEY,
    CHECKS_DOWN_KEY,
    DEPOSIT_CODE,
    DEPOSIT_METERED_KEY,
    DOWN_UNTIL_KEY,
    PRICE,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MIN_CHECK_SECONDS = 30  # the fake's "one request per transaction per minute", shortened; longer than the halt


def test_deposit_runs_out_is_partly_then_fully_topped_up_and_every_unit_is_delivered_once(
    stack, order_factory, report, settings
):
    settings.FULFILLMENT_PROVIDER = "flaky"  # the items are sold with the provider the worker uses
    early = order_factory()  # its purchase gets no answer: pending through the whole halt
    orders = [order_factory(quantities=(2,)) for _ in range(5)]
    order_ids = [order.pk for order in orders]
    everything = [early.pk, *order_ids]
    OrderItem.objects.filter(order_id__in=everything).update(provider_price=PRICE)  # sold at the provider's price
    units = Delivery.objects.filter(order_id__in=order_ids)
    stack.redis.set(DEPOSIT_METERED_KEY, 1)
    stack.redis.set(BALANCE_KEY, PRICE)  # exactly the early unit
    stack.redis.set(DOWN_UNTIL_KEY, time.time() + 3600)
    stack.redis.set(CHECKS_DOWN_KEY, 1)
    worker = stack.start_worker(
        concurrency=4,
        beat=True,
        FULFILLMENT_PROVIDER="flaky",
        FLAKY_MODE="timeout",
        FLAKY_MIN_CHECK_SECONDS=MIN_CHECK_SECONDS,
        FULFILLMENT_ACCOUNT_CHECK_INTERVAL_SECONDS=1,
        FULFILLMENT_FAULT_PROBE_SECONDS=3600,  # only the account check may lift it here
        FULFILLMENT_STALE_AFTER_SECONDS=5,  # how long a unit held back by the halt waits before a look
    )
    web = stack.start_web(FULFILLMENT_PROVIDER="flaky")
    started = time.monotonic()

    assert web.notify(early).status_code == 200
    pending = wait_until(
        lambda: Delivery.objects.filter(order=early, status=DeliveryStatus.PENDING).first(),
        timeout=60,
        what="the early unit's purchase to be pending",
    )
    stack.redis.delete(DOWN_UNTIL_KEY)  # purchases are answered again; its status checks are not
    stack.redis.set(BALANCE_KEY, 0)  # the deposit runs out

    for order in orders:
        assert web.notify(order).status_code == 200
    # Every unit is held: waiting, unclaimed, not due, under the halt.
    wait_until(
        lambda: (
            ProviderHalt.objects.filter(provider="flaky", code=DEPOSIT_CODE).exists()
            and units.filter(status=DeliveryStatus.WAITING, claim_token="").count() == 10
            and not units.filter(next_attempt_at__lte=timezone.now()).exists()
        ),
        timeout=60,
        what="every unit to be held by the halt",
    )
    refused_while_empty = DeliveryAttempt.objects.filter(order_id__in=order_ids, failure_scope="shop").count()
    # Let the account check run twice more against the empty deposit: it must not lift the halt,
    # and no purchase is sent meanwhile.
    _two_more_account_checks()
    assert DeliveryAttempt.objects.filter(order_id__in=order_ids).count() == refused_while_empty
    assert not units.filter(status=DeliveryStatus.FAILED).exists()
    assert set(units.values_list("purchase_attempts", flat=True)) == {0}
    assert ProviderAccount.objects.get(provider="flaky").balance == 0

    # A partial top-up: enough for two units. The two oldest go; the other eight stay held.
    stack.redis.set(BALANCE_KEY, 2 * PRICE + PRICE // 2)
    oldest = list(units.order_by("pk").values_list("pk", flat=True)[:2])
    wait_until(
        lambda: set(units.filter(status=DeliveryStatus.DELIVERED).values_list("pk", flat=True)) == set(oldest),
        timeout=60,
        what="the two oldest units to be delivered with the partial top-up",
    )
    _two_more_account_checks()
    held = units.exclude(pk__in=oldest)
    assert set(held.values_list("status", flat=True)) == {DeliveryStatus.WAITING}
    assert set(held.values_list("purchase_attempts", flat=True)) == {0}
    assert all(message.startswith("Held: the flaky deposit") for message in held.values_list("last_message", flat=True))
    assert "top up at least 75,000 more" in ProviderHalt.objects.get().check_result
    # No burst of refusals: the balance paid for exactly what was released.
    assert DeliveryAttempt.objects.filter(order_id__in=order_ids, failure_scope="shop").count() == refused_while_empty
    assert int(stack.redis.get(BALANCE_KEY)) == PRICE // 2

    stack.redis.set(BALANCE_KEY, 1_000_000)  # staff top up enough
    stack.redis.delete(CHECKS_DOWN_KEY)
    wait_for_orders(everything, "fulfilled", timeout=90)
    seconds = time.monotonic() - started

    book = assert_delivered_exactly_once(everything)
    assert book.entries == 11
    assert not ProviderHalt.objects.exists()
    # Waiting used no attempt: each unit's only counted purchase is the one that delivered it.
    assert set(units.values_list("purchase_attempts", flat=True)) == {1}
    attempts = DeliveryAttempt.objects.filter(order_id__in=everything)
    provider_calls = int(stack.redis.get(CALLS_KEY))
    assert provider_calls == attempts.count(), "every provider call must leave a DeliveryAttempt"
    refused = attempts.filter(failure_scope="shop").count()
    assert refused == refused_while_empty
    assert refused <= 4 + 1  # at most the purchases in flight when the first refusal came, and the first
    # The pending purchase was asked about again and again under one reference, across the halt
    # and its lift, never twice within the minimum interval.
    requests = list(
        DeliveryAttempt.objects.filter(reference=pending.reference, kind__in=(AttemptKind.PURCHASE, AttemptKind.CHECK))
        .order_by("started_at")
        .values_list("started_at", flat=True)
    )
    assert len(requests) >= 2
    gaps = [later - earlier for earlier, later in zip(requests, requests[1:], strict=False)]
    assert min(gaps) >= timedelta(seconds=MIN_CHECK_SECONDS), gaps
    assert worker.count(r"Deliveries through flaky halted") == 1
    assert worker.count(r"Deliveries through flaky partly resume") == 1
    assert worker.count(r"Deliveries through flaky resume") == 1
    report(
        orders=6,
        units=11,
        refused_while_empty=refused,
        provider_calls=provider_calls,
        pending_requests=len(requests),
        shortest_gap_s=round(min(gaps).total_seconds(), 1),
        ledger_deliveries=sum(book.delivered_per_unit.values()),
        seconds=round(seconds, 1),
    )


def _two_more_account_checks() -> None:
    first = wait_until(lambda: ProviderHalt.objects.get().checked_at, timeout=30, what="an account check")
    second = wait_until(
        lambda: (ProviderHalt.objects.get().checked_at > first) and ProviderHalt.objects.get().checked_at,
        timeout=30,
        what="another account check",
    )
    wait_until(lambda: ProviderHalt.objects.get().checked_at > second, timeout=30, what="a third account check")
