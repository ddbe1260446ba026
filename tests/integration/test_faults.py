"""A fault that is not the units', with real processes: the shop's deposit runs out while orders
are being paid. Deliveries halt without using any unit's purchase attempts and without calling
the provider again, the periodic account check (Celery beat) lifts the halt once the deposit is
topped up, and every unit is then delivered exactly once."""

import time

import pytest

from fulfillment.models import Delivery, DeliveryAttempt, DeliveryStatus, ProviderAccount, ProviderHalt
from tests.integration.conftest import assert_delivered_exactly_once, wait_for_orders, wait_until
from tests.integration.providers import BALANCE_KEY, CALLS_KEY, DEPOSIT_CODE, DEPOSIT_EMPTY_KEY

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_deposit_runs_out_then_is_topped_up_and_every_unit_is_delivered_once(stack, order_factory, report, settings):
    settings.FULFILLMENT_PROVIDER = "flaky"  # the items are sold with the provider the worker uses
    orders = [order_factory(quantities=(2,)) for _ in range(5)]
    order_ids = [order.pk for order in orders]
    units = Delivery.objects.filter(order_id__in=order_ids)
    stack.redis.set(DEPOSIT_EMPTY_KEY, 1)
    stack.redis.set(BALANCE_KEY, 0)
    worker = stack.start_worker(
        concurrency=4,
        beat=True,
        FULFILLMENT_PROVIDER="flaky",
        FLAKY_MODE="fail",
        FULFILLMENT_ACCOUNT_CHECK_INTERVAL_SECONDS=1,
        FULFILLMENT_FAULT_PROBE_SECONDS=3600,  # only the account check may lift it here
    )
    web = stack.start_web(FULFILLMENT_PROVIDER="flaky")
    started = time.monotonic()
    for order in orders:
        assert web.notify(order).status_code == 200

    # Every unit is held: waiting, unclaimed, not due, under the halt.
    wait_until(
        lambda: (
            ProviderHalt.objects.filter(provider="flaky", code=DEPOSIT_CODE).exists()
            and units.filter(status=DeliveryStatus.WAITING, claim_token="").count() == 10
            and not units.filter(next_attempt_at__lte=time_now()).exists()
        ),
        timeout=60,
        what="every unit to be held by the halt",
    )
    calls_while_empty = int(stack.redis.get(CALLS_KEY))
    # Let the account check run twice more against the empty deposit: it must not lift the halt,
    # and nothing is sent meanwhile.
    first_check = wait_until(lambda: ProviderHalt.objects.get().checked_at, timeout=30, what="an account check")
    wait_until(lambda: ProviderHalt.objects.get().checked_at > first_check, timeout=30, what="another account check")
    assert int(stack.redis.get(CALLS_KEY)) == calls_while_empty
    assert not units.filter(status=DeliveryStatus.FAILED).exists()
    assert set(units.values_list("purchase_attempts", flat=True)) == {0}
    assert ProviderAccount.objects.get(provider="flaky").balance == 0

    stack.redis.delete(DEPOSIT_EMPTY_KEY)  # staff top up the deposit
    stack.redis.set(BALANCE_KEY, 100000)
    wait_for_orders(order_ids, "fulfilled", timeout=60)
    seconds = time.monotonic() - started

    book = assert_delivered_exactly_once(order_ids)
    assert book.entries == 10
    assert not ProviderHalt.objects.exists()
    assert ProviderAccount.objects.get(provider="flaky").balance == 100000
    # Waiting used no attempt: each unit's only counted purchase is the one that delivered it.
    assert set(units.values_list("purchase_attempts", flat=True)) == {1}
    attempts = DeliveryAttempt.objects.filter(order_id__in=order_ids)
    provider_calls = int(stack.redis.get(CALLS_KEY))
    assert provider_calls == attempts.count(), "every provider call must leave a DeliveryAttempt"
    refused = attempts.filter(failure_scope="shop").count()
    assert refused == calls_while_empty
    assert refused <= 4 + 1  # at most the purchases in flight when the first refusal came, and the first
    assert worker.count(r"Deliveries through flaky halted") == 1
    assert worker.count(r"Deliveries through flaky resume") == 1
    report(
        orders=5,
        units=10,
        refused_while_empty=refused,
        provider_calls=provider_calls,
        ledger_deliveries=sum(book.delivered_per_unit.values()),
        seconds=round(seconds, 1),
    )


def time_now():
    from django.utils import timezone

    return timezone.now()
