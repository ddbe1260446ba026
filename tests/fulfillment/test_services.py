"""The delivery engine (fulfillment.services): claims, references, results, retries and reconciliation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment import services
from fulfillment.models import (
    AttemptKind,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    MockLedgerEntry,
    OrderFlag,
    ProviderHalt,
)
from fulfillment.providers.base import FailureScope, FulfillmentResult
from fulfillment.tasks import deliver_order, reconcile_paid_orders
from orders.models import Order
from orders.services import order_refund
from orders.state import OrderStatus
from tests.conftest import delivered_per_unit

RETRYABLE = FulfillmentResult.failed(scope=FailureScope.RETRYABLE, code="OOS", message="out of stock")
PERMANENT = FulfillmentResult.failed(scope=FailureScope.PERMANENT, code="40", message="wrong number")
PENDING = FulfillmentResult.pending(code="03", message="pending at supplier")


def skus(order: Order) -> list[str]:
    return [item.product.sku for item in order.items.select_related("product")]


def units(order: Order) -> list[Delivery]:
    return list(Delivery.objects.filter(order=order).order_by("item_id", "unit_index"))


def make_due(order: Order) -> None:
    """Let the backoff pass (test time travel)."""
    Delivery.objects.filter(order=order).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def status_of(order: Order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


# --- the happy path ----------------------------------------------------------------------------


def test_every_unit_is_delivered_once_and_the_order_fulfilled(paid_order_factory):
    order = paid_order_factory(quantities=(1, 3))

    report = services.fulfill_order(order.pk)

    assert (report.units_total, report.units_delivered, report.complete) == (4, 4, True)
    assert report.order_status == OrderStatus.FULFILLED
    assert status_of(order) == OrderStatus.FULFILLED
    assert sorted(delivered_per_unit()) == sorted(unit.unit_key for unit in units(order))
    assert set(delivered_per_unit().values()) == {1}
    for unit in units(order):
        assert (unit.status, unit.serial, unit.provider) == (DeliveryStatus.DELIVERED, f"MOCK-{unit.reference}", "mock")
        assert (unit.claim_token, unit.claim_expires_at, unit.purchase_attempts) == ("", None, 1)
        attempt = DeliveryAttempt.objects.get(delivery=unit)
        assert (attempt.kind, attempt.outcome, attempt.reference) == (AttemptKind.PURCHASE, "delivered", unit.reference)


def test_a_second_run_buys_nothing(paid_order_factory):
    order = paid_order_factory(quantities=(2,))
    services.fulfill_order(order.pk)
    with pytest.raises(services.OrderNotFulfillable, match="already fulfilled"):
        services.fulfill_order(order.pk)
    assert MockLedgerEntry.objects.count() == 2


def test_fulfill_order_refuses_unknown_and_unpaid_orders(order_factory):
    with pytest.raises(services.OrderNotFound, match="Order 424242 does not exist"):
        services.fulfill_order(424242)
    order = order_factory()
    with pytest.raises(services.OrderNotFulfillable, match=f"Order {order.pk} is new, not paid"):
        services.fulfill_order(order.pk)
    assert not Delivery.objects.exists()


def test_items_limit_the_run(paid_order_factory, scripted_provider):
    order = paid_order_factory(quantities=(1, 1))
    first, second = order.items.all()

    report = services.fulfill_order(order.pk, items=[second.pk])

    assert [unit.unit_key for unit in report.units] == [f"{order.pk}-{second.pk}-0"]
    assert (report.units_delivered, report.units_total, report.order_status) == (1, 2, OrderStatus.PAID)
    assert [params.sku for _, params in scripted_provider.calls] == [second.product.sku]


def test_on_unit_reports_progress(paid_order_factory):
    order = paid_order_factory(quantities=(3,))
    seen = []
    services.fulfill_order(order.pk, on_unit=seen.append)
    assert [(unit.kind, unit.outcome) for unit in seen] == [("purchase", "delivered")] * 3


def test_an_explicit_provider_instance_is_used_for_new_purchases(paid_order_factory, scripted_provider, settings):
    settings.FULFILLMENT_PROVIDER = "mock"
    order = paid_order_factory()
    services.fulfill_order(order.pk, provider=scripted_provider)
    assert len(scripted_provider.calls) == 1
    assert units(order)[0].provider == "scripted"
    assert not MockLedgerEntry.objects.exists()


# --- failures and retries -----------------------------------------------------------------------


def test_three_items_one_failure_then_the_retry_delivers_only_that_unit(paid_order_factory, scripted_provider):
    order = paid_order_factory(quantities=(1, 1, 1))
    sku_a, sku_b, sku_c = skus(order)
    scripted_provider.script(sku_b, RETRYABLE)
    failed_reference = units(order)[1].reference

    report = services.fulfill_order(order.pk)

    assert [unit.outcome for unit in report.units] == ["delivered", "failed", "delivered"]
    assert (report.units_delivered, report.order_status) == (2, OrderStatus.PAID)
    unit_b = units(order)[1]
    assert unit_b.status == DeliveryStatus.WAITING
    assert unit_b.reference != failed_reference  # a final failure answer: a new purchase is safe
    assert (unit_b.purchase_no, unit_b.failure_scope, unit_b.last_code) == (2, FailureScope.RETRYABLE, "OOS")
    assert unit_b.next_attempt_at > timezone.now()  # backoff

    decision = services.order_fulfillment_reset_for_retry(order_id=order.pk)
    assert decision.queued
    scripted_provider.calls.clear()
    retry = services.fulfill_order(order.pk)

    assert [(kind, params.sku, params.reference) for kind, params in scripted_provider.calls] == [
        ("fulfill", sku_b, unit_b.reference)
    ]
    assert (retry.units_delivered, retry.order_status) == (3, OrderStatus.FULFILLED)
    attempts = list(DeliveryAttempt.objects.filter(order=order).values_list("delivery__item__product__sku", "outcome"))
    assert sorted(attempts) == sorted(
        [(sku_a, "delivered"), (sku_b, "failed"), (sku_c, "delivered"), (sku_b, "delivered")]
    )
    assert set(DeliveryAttempt.objects.filter(delivery=unit_b).values_list("reference", flat=True)) == {
        failed_reference,
        unit_b.reference,
    }


def test_three_items_with_the_mock_ledger(paid_order_factory, settings):
    # The same scenario through the real Mock and its ledger: one unit fails, the retry buys it.
    order = paid_order_factory(quantities=(1, 1, 1))
    middle = units(order)[1]
    MockLedgerEntry.objects.create(
        reference=middle.reference, unit_key=middle.unit_key, sku="x", recipient="x", outcome="failed"
    )

    services.fulfill_order(order.pk)
    assert delivered_per_unit() == {units(order)[0].unit_key: 1, units(order)[2].unit_key: 1}

    services.order_fulfillment_reset_for_retry(order_id=order.pk)
    services.fulfill_order(order.pk)

    assert delivered_per_unit() == {unit.unit_key: 1 for unit in units(order)}
    assert MockLedgerEntry.objects.filter(unit_key=middle.unit_key).count() == 2
    assert status_of(order) == OrderStatus.FULFILLED


def test_pending_outcome_is_rechecked_with_the_same_reference(paid_order_factory, scripted_provider):
    order = paid_order_factory()
    (sku,) = skus(order)
    scripted_provider.script(sku, PENDING, PENDING)
    reference = units(order)[0].reference

    services.fulfill_order(order.pk)
    unit = units(order)[0]
    assert (unit.status, unit.reference, unit.status_checks) == (DeliveryStatus.PENDING, reference, 0)
    assert unit.next_attempt_at > timezone.now()

    services.fulfill_order(order.pk)  # not due yet: nothing is asked
    assert len(scripted_provider.calls) == 1

    make_due(order)
    services.fulfill_order(order.pk)
    assert units(order)[0].status_checks == 1
    make_due(order)
    report = services.fulfill_order(order.pk)

    assert scripted_provider.calls_for(sku) == [("fulfill", reference), ("check", reference), ("check", reference)]
    unit = units(order)[0]
    assert (unit.status, unit.reference, unit.purchase_no, unit.serial) == (
        DeliveryStatus.DELIVERED,
        reference,
        1,
        f"SER-{reference}",
    )
    assert report.order_status == OrderStatus.FULFILLED
    kinds = list(DeliveryAttempt.objects.filter(delivery=unit).values_list("kind", "outcome"))
    assert kinds == [("purchase", "pending"), ("check", "pending"), ("check", "delivered")]


def test_pending_then_failure_gets_a_new_reference(paid_order_factory, scripted_provider):
    order = paid_order_factory()
    (sku,) = skus(order)
    scripted_provider.script(sku, PENDING, RETRYABLE)
    first_reference = units(order)[0].reference

    services.fulfill_order(order.pk)
    make_due(order)
    services.fulfill_order(order.pk)  # the check answers a final failure
    unit = units(order)[0]
    assert (unit.status, unit.purchase_no) == (DeliveryStatus.WAITING, 2)
    assert unit.reference != first_reference

    make_due(order)
    services.fulfill_order(order.pk)

    assert scripted_provider.calls_for(sku) == [
        ("fulfill", first_reference),
        ("check", first_reference),
        ("fulfill", unit.reference),
    ]
    assert units(order)[0].status == DeliveryStatus.DELIVERED


def test_provider_exception_is_treated_as_pending(paid_order_factory, scripted_provider):
    order = paid_order_factory()
    (sku,) = skus(order)
    scripted_provider.script(sku, TimeoutError("read timed out, key=SECRET-KEY-123"))
    reference = units(order)[0].reference

    report = services.fulfill_order(order.pk)

    assert [(unit.outcome, unit.code) for unit in report.units] == [("pending", "exception")]
    unit = units(order)[0]
    assert (unit.status, unit.reference) == (DeliveryStatus.PENDING, reference)
    attempt = DeliveryAttempt.objects.get(delivery=unit)
    assert (attempt.outcome, attempt.code) == ("pending", "exception")
    assert attempt.message == "TimeoutError from provider; outcome unknown, will re-check."
    assert "SECRET-KEY-123" not in unit.last_message  # exception text may carry secrets

    make_due(order)
    services.fulfill_order(order.pk)
    assert scripted_provider.calls_for(sku) == [("fulfill", reference), ("check", reference)]
    assert units(order)[0].status == DeliveryStatus.DELIVERED


def test_max_purchase_attempts_then_failed(paid_order_factory, scripted_provider, settings):
    settings.FULFILLMENT_MAX_PURCHASE_ATTEMPTS = 3
    order = paid_order_factory()
    (sku,) = skus(order)
    scripted_provider.script(sku, RETRYABLE, RETRYABLE, RETRYABLE)

    for _ in range(5):
        services.fulfill_order(order.pk)
        make_due(order)

    calls = scripted_provider.calls_for(sku)
    assert [kind for kind, _ in calls] == ["fulfill"] * 3
    assert len({reference for _, reference in calls}) == 3
    unit = units(order)[0]
    assert (unit.status, unit.purchase_attempts, unit.failure_scope) == (
        DeliveryStatus.FAILED,
        3,
        FailureScope.RETRYABLE,
    )
    assert status_of(order) == OrderStatus.PAID

    # Staff retry: a fresh budget and a new reference.
    services.order_fulfillment_reset_for_retry(order_id=order.pk)
    unit_after = units(order)[0]
    assert (unit_after.status, unit_after.purchase_attempts, unit_after.purchase_no) == (DeliveryStatus.WAITING, 0, 4)
    assert unit_after.reference != unit.reference
    services.fulfill_order(order.pk)
    assert status_of(order) == OrderStatus.FULFILLED


def test_permanent_failure_needs_staff(paid_order_factory, scripted_provider):
    order = paid_order_factory()
    (sku,) = skus(order)
    scripted_provider.script(sku, PERMANENT)

    report = services.fulfill_order(order.pk)
    make_due(order)
    services.fulfill_order(order.pk)

    assert [unit.failure_scope for unit in report.failed] == [FailureScope.PERMANENT]
    unit = units(order)[0]
    assert (unit.status, unit.last_code, unit.last_message) == (DeliveryStatus.FAILED, "40", "wrong number")
    assert len(scripted_provider.calls) == 1


def test_configuration_failure_halts_the_provider(paid_order_factory, scripted_provider):
    order = paid_order_factory(quantities=(3,))
    (sku,) = skus(order)
    scripted_provider.script(
        sku, FulfillmentResult.failed(scope=FailureScope.CONFIGURATION, code="41", message="bad sign")
    )

    report = services.fulfill_order(order.pk)

    assert len(scripted_provider.calls) == 1  # the other units were not sent
    halt = ProviderHalt.objects.get()
    assert (halt.provider, halt.code, halt.reason) == ("scripted", "41", "bad sign")
    assert report.skipped == "provider scripted is halted (see Fulfillment > Provider halts)"
    assert {unit.status for unit in units(order)} == {DeliveryStatus.WAITING}
    assert all(unit.claim_token == "" for unit in units(order))

    make_due(order)
    services.fulfill_order(order.pk)
    assert len(scripted_provider.calls) == 1  # still halted
    assert services.paid_orders_reconcile() == []

    assert services.provider_resume(provider="scripted") == 1
    services.fulfill_order(order.pk)
    assert status_of(order) == OrderStatus.FULFILLED


# --- money safety ---------------------------------------------------------------------------------


def test_refund_during_a_run_stops_the_units_not_yet_sent(paid_order_factory, scripted_provider):
    order = paid_order_factory(quantities=(3,))
    (sku,) = skus(order)

    def refund_meanwhile(params):
        order_refund(order_id=order.pk)  # the bank's REFUNDED arrives while unit 1 is at the provider
        return FulfillmentResult.delivered(serial="S1")

    scripted_provider.script(sku, refund_meanwhile)

    report = services.fulfill_order(order.pk)

    assert len(scripted_provider.calls) == 1
    assert [unit.status for unit in units(order)] == [
        DeliveryStatus.DELIVERED,
        DeliveryStatus.CANCELLED,
        DeliveryStatus.CANCELLED,
    ]
    assert report.order_status == OrderStatus.REFUNDED
    assert status_of(order) == OrderStatus.REFUNDED


def test_units_claimed_by_another_worker_are_left_alone(paid_order_factory, scripted_provider):
    order = paid_order_factory(quantities=(2,))
    busy, free = units(order)
    Delivery.objects.filter(pk=busy.pk).update(
        claim_token="other-worker", claim_expires_at=timezone.now() + timedelta(minutes=5)
    )

    services.fulfill_order(order.pk)

    assert [params.reference for _, params in scripted_provider.calls] == [free.reference]
    assert Delivery.objects.get(pk=busy.pk).status == DeliveryStatus.WAITING


def test_a_unit_left_sending_by_a_dead_worker_is_checked_not_bought_again(paid_order_factory, scripted_provider):
    order = paid_order_factory()
    unit = units(order)[0]
    Delivery.objects.filter(pk=unit.pk).update(
        status=DeliveryStatus.SENDING,
        provider="scripted",
        purchase_attempts=1,
        reference_sent_at=timezone.now() - timedelta(minutes=10),
        claim_token="dead-worker",
        claim_expires_at=timezone.now() - timedelta(seconds=1),
    )

    services.fulfill_order(order.pk)

    assert [(kind, params.reference) for kind, params in scripted_provider.calls] == [("check", unit.reference)]
    assert units(order)[0].status == DeliveryStatus.DELIVERED
    assert units(order)[0].purchase_attempts == 1


def test_a_run_stopped_by_a_database_error_lets_go_of_its_units(paid_order_factory, scripted_provider, monkeypatch):
    """A deadlock or a lost connection while recording the first unit's answer: the run re-raises
    (its task retries) but first releases every unit it claimed, so the retry works on them at
    once: the sent unit is checked by its reference, never bought again."""
    from django.db import DatabaseError

    from fulfillment.services import running

    order = paid_order_factory(quantities=(3,))
    first = units(order)[0]
    record = running.delivery_record_result

    def deadlocked(**kwargs):
        raise DatabaseError("deadlock detected")

    monkeypatch.setattr(running, "delivery_record_result", deadlocked)
    with pytest.raises(DatabaseError):
        services.fulfill_order(order.pk)

    assert [(kind, params.reference) for kind, params in scripted_provider.calls] == [("fulfill", first.reference)]
    assert [(unit.status, unit.claim_token, unit.claim_expires_at) for unit in units(order)] == [
        (DeliveryStatus.SENDING, "", None),
        (DeliveryStatus.WAITING, "", None),
        (DeliveryStatus.WAITING, "", None),
    ]

    monkeypatch.setattr(running, "delivery_record_result", record)
    report = services.fulfill_order(order.pk)

    retried = [(kind, params.reference) for kind, params in scripted_provider.calls[1:]]
    assert retried == [("check", first.reference)] + [("fulfill", unit.reference) for unit in units(order)[1:]]
    assert report.complete and status_of(order) == OrderStatus.FULFILLED
    assert units(order)[0].purchase_attempts == 1


def test_a_pending_unit_too_old_to_check_fails_with_instructions(paid_order_factory, scripted_provider, monkeypatch):
    monkeypatch.setattr(type(scripted_provider), "max_check_age", timedelta(days=90), raising=False)
    order = paid_order_factory()
    unit = units(order)[0]
    Delivery.objects.filter(pk=unit.pk).update(
        status=DeliveryStatus.PENDING,
        provider="scripted",
        reference_sent_at=timezone.now() - timedelta(days=91),
        next_attempt_at=timezone.now(),
    )

    report = services.fulfill_order(order.pk)

    assert scripted_provider.calls == []
    unit = units(order)[0]
    assert (unit.status, unit.last_code) == (DeliveryStatus.FAILED, "check_window_expired")
    assert "Ask the provider whether it was delivered" in unit.last_message
    assert report.failed[0].failure_scope == FailureScope.PERMANENT


def test_min_check_interval_spaces_checks(paid_order_factory, scripted_provider, monkeypatch):
    monkeypatch.setattr(type(scripted_provider), "min_check_interval", timedelta(hours=2))
    order = paid_order_factory()
    (sku,) = skus(order)
    scripted_provider.script(sku, PENDING)

    before = timezone.now()
    services.fulfill_order(order.pk)

    assert units(order)[0].next_attempt_at >= before + timedelta(hours=2)


# --- callbacks -------------------------------------------------------------------------------------


def test_callback_settles_a_pending_unit_once(paid_order_factory, scripted_provider):
    order = paid_order_factory()
    (sku,) = skus(order)
    scripted_provider.script(sku, PENDING)
    services.fulfill_order(order.pk)
    reference = units(order)[0].reference
    delivered = FulfillmentResult.delivered(serial="CB-1")

    assert services.delivery_resolve_by_reference(reference=reference, result=delivered, provider_name="scripted")
    assert not services.delivery_resolve_by_reference(reference=reference, result=delivered, provider_name="scripted")
    failed = FulfillmentResult.failed(scope=FailureScope.PERMANENT)
    assert not services.delivery_resolve_by_reference(reference=reference, result=failed, provider_name="scripted")

    unit = units(order)[0]
    assert (unit.status, unit.serial) == (DeliveryStatus.DELIVERED, "CB-1")
    assert status_of(order) == OrderStatus.FULFILLED
    # Settled once; all three callbacks are on record, and the failure after the delivery flags the order.
    assert DeliveryAttempt.objects.filter(delivery=unit, kind=AttemptKind.CALLBACK).count() == 3
    assert list(OrderFlag.objects.values_list("order_id", "kind")) == [(order.pk, "callback_contradicts")]


def test_callback_for_an_unknown_reference_or_pending_changes_nothing(paid_order_factory):
    order = paid_order_factory()
    delivered = FulfillmentResult.delivered(serial="X")
    assert not services.delivery_resolve_by_reference(reference="nope", result=delivered, provider_name="mock")
    # A WAITING unit was never sent: a callback cannot be about it.
    reference = units(order)[0].reference
    assert not services.delivery_resolve_by_reference(reference=reference, result=delivered, provider_name="mock")
    assert not services.delivery_resolve_by_reference(
        reference=reference, result=FulfillmentResult.pending(), provider_name="mock"
    )
    assert units(order)[0].status == DeliveryStatus.WAITING
    assert not DeliveryAttempt.objects.exists()


# --- reconciliation and the tasks ------------------------------------------------------------------


def test_reconcile_queues_paid_orders_with_due_units(paid_order_factory, order_factory, queued_deliveries, settings):
    due = paid_order_factory()
    recently_queued = paid_order_factory()
    unpaid = order_factory()
    stale = timezone.now() - timedelta(seconds=settings.FULFILLMENT_STALE_AFTER_SECONDS + 1)
    Delivery.objects.filter(order=due).update(queued_at=stale)  # its message was lost

    queued = services.paid_orders_reconcile()

    assert queued == [due.pk]
    assert recently_queued.pk not in queued and unpaid.pk not in queued
    assert Delivery.objects.get(order=due).queued_at > stale


def test_reconcile_requeues_a_unit_whose_worker_died(paid_order_factory, queued_deliveries):
    order = paid_order_factory()
    Delivery.objects.filter(order=order).update(
        status=DeliveryStatus.SENDING,
        queued_at=None,
        claim_token="dead",
        claim_expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert services.paid_orders_reconcile() == [order.pk]


def test_reconcile_repairs_a_paid_order_without_units(paid_order_factory, queued_deliveries, settings):
    order = paid_order_factory(quantities=(2,))
    Delivery.objects.filter(order=order).delete()
    Order.objects.filter(pk=order.pk).update(
        paid_at=timezone.now() - timedelta(seconds=settings.FULFILLMENT_STALE_AFTER_SECONDS + 1)
    )

    assert reconcile_paid_orders() == [order.pk]

    assert Delivery.objects.filter(order=order, status=DeliveryStatus.WAITING).count() == 2


def test_reconcile_runs_the_queued_deliveries(paid_order_factory, settings, django_capture_on_commit_callbacks):
    order = paid_order_factory(quantities=(2,))
    Delivery.objects.filter(order=order).update(queued_at=None)

    with django_capture_on_commit_callbacks(execute=True):
        services.paid_orders_reconcile()

    assert status_of(order) == OrderStatus.FULFILLED
    assert set(delivered_per_unit().values()) == {1}


def test_deliver_order_task_reports_and_skips(paid_order_factory, order_factory):
    order = paid_order_factory(quantities=(2,))
    assert deliver_order.delay(order.pk).get() == {
        "order_id": order.pk,
        "delivered": 2,
        "total": 2,
        "status": OrderStatus.FULFILLED,
    }
    unpaid = order_factory()
    assert deliver_order.delay(unpaid.pk).get() == {
        "order_id": unpaid.pk,
        "skipped": f"Order {unpaid.pk} is new, not paid: only paid orders are delivered.",
    }
    assert deliver_order.delay(99999).get()["skipped"].startswith("Order 99999 does not exist")


def test_retry_of_a_fully_delivered_order_completes_it(paid_order_factory, queued_deliveries):
    order = paid_order_factory()
    Delivery.objects.filter(order=order).update(status=DeliveryStatus.DELIVERED)

    decision = services.order_fulfillment_retry(order_id=order.pk)

    assert (decision.queued, decision.reason) == (False, "every unit is already delivered")
    assert status_of(order) == OrderStatus.FULFILLED
    assert queued_deliveries == []


@pytest.mark.parametrize("interval", [timedelta(0), timedelta(seconds=60)])
def test_staff_retry_brings_a_pending_check_forward_within_the_providers_interval(
    paid_order_factory, scripted_provider, monkeypatch, interval
):
    monkeypatch.setattr(type(scripted_provider), "min_check_interval", interval)
    order = paid_order_factory()
    (sku,) = skus(order)
    scripted_provider.script(sku, PENDING)
    services.fulfill_order(order.pk)
    far = timezone.now() + timedelta(hours=1)
    Delivery.objects.filter(order=order).update(next_attempt_at=far)  # a long backoff

    before = timezone.now()
    services.order_fulfillment_reset_for_retry(order_id=order.pk)

    unit = units(order)[0]
    assert (unit.status, unit.purchase_no) == (DeliveryStatus.PENDING, 1)  # same purchase, same reference
    assert before + interval <= unit.next_attempt_at <= timezone.now() + interval
