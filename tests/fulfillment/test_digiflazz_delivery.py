"""Digiflazz deliveries through the engine (fulfill_order): documented development cases, failure
classes, unknown outcomes and their re-checks, quantities, halts and polling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment.models import AttemptKind, Delivery, DeliveryAttempt, DeliveryStatus, ProviderHalt
from fulfillment.providers.base import FailureScope, Outcome
from fulfillment.services import fulfill_order, order_fulfillment_reset_for_retry, paid_orders_reconcile
from orders.models import Order
from tests.conftest import let_time_pass

pytestmark = pytest.mark.django_db


def _make_due(order: Order) -> None:
    """The backoff / check interval has passed."""
    let_time_pass(order=order)


def _status(order: Order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


# --- the documented development cases --------------------------------------------------------


def test_documented_success_delivers_the_serial(fake_digiflazz, digiflazz_order):
    order = digiflazz_order(recipient="087800001230")
    report = fulfill_order(order.pk)

    unit = Delivery.objects.get(order=order)
    assert unit.status == DeliveryStatus.DELIVERED
    assert unit.serial == "1234567890"
    assert report.complete
    assert _status(order) == "fulfilled"
    attempt = DeliveryAttempt.objects.get(delivery=unit)
    assert (attempt.kind, attempt.outcome, attempt.code, attempt.provider) == (
        "purchase",
        "delivered",
        "00",
        "digiflazz",
    )
    assert attempt.raw["sn"] == "1234567890"
    assert attempt.raw["buyer_last_saldo"] == 980000


def test_documented_failure_rc_02_is_failed_and_bought_again_later(fake_digiflazz, digiflazz_order, settings):
    order = digiflazz_order(recipient="087800001232")
    first_ref = Delivery.objects.get(order=order).reference
    fulfill_order(order.pk)

    attempt = DeliveryAttempt.objects.get()
    assert (attempt.outcome, attempt.code, attempt.failure_scope) == ("failed", "02", "retryable")
    unit = Delivery.objects.get(order=order)
    # A final failure: nothing was bought, so a later attempt is a new purchase with a new ref_id.
    assert unit.status == DeliveryStatus.WAITING
    assert unit.reference != first_ref
    assert unit.next_attempt_at > timezone.now()
    assert _status(order) == "paid"

    settings.FULFILLMENT_MAX_PURCHASE_ATTEMPTS = 2
    _make_due(order)
    fulfill_order(order.pk)
    unit.refresh_from_db()
    assert unit.status == DeliveryStatus.FAILED  # attempts exhausted: staff decide
    assert [body["ref_id"] for body in fake_digiflazz.transaction_calls] == [first_ref, unit.reference]


@pytest.mark.parametrize("recipient", ["087800001233", "087800001234"])
def test_documented_pending_cases_wait_for_the_callback(fake_digiflazz, digiflazz_order, recipient):
    order = digiflazz_order(recipient=recipient)
    before = timezone.now()
    report = fulfill_order(order.pk)

    unit = Delivery.objects.get(order=order)
    assert unit.status == DeliveryStatus.PENDING
    assert report.units[0].outcome == Outcome.PENDING
    # Digiflazz: never ask about the same transaction twice within a minute.
    assert unit.next_attempt_at >= before + timedelta(seconds=60)
    assert fulfill_order(order.pk).units == []
    assert len(fake_digiflazz.transaction_calls) == 1


# --- failure classes --------------------------------------------------------------------------


def test_retryable_failure_gets_a_new_reference(fake_digiflazz, digiflazz_order):
    # rc 63 (no parallel transactions to one number) concerns this unit; rc 68 (out of stock), used
    # here before, now pauses the product (test_faults.py).
    fake_digiflazz.answer("081111111111", status="Gagal", rc="63", message="Tidak support multi transaksi")
    order = digiflazz_order(recipient="081111111111")
    old = Delivery.objects.get(order=order).reference
    fulfill_order(order.pk)

    unit = Delivery.objects.get(order=order)
    assert (unit.status, unit.failure_scope, unit.last_code) == ("waiting", "retryable", "63")
    assert unit.reference != old
    assert unit.purchase_no == 2
    assert not ProviderHalt.objects.exists()


def test_permanent_failure_waits_for_staff(fake_digiflazz, digiflazz_order):
    fake_digiflazz.answer("0812", status="Gagal", rc="54", message="Nomor tujuan salah")
    order = digiflazz_order(recipient="0812")
    fulfill_order(order.pk)

    unit = Delivery.objects.get(order=order)
    assert (unit.status, unit.failure_scope, unit.last_code) == ("failed", "permanent", "54")
    assert "recipient" in unit.last_message
    assert not ProviderHalt.objects.exists()
    _make_due(order)
    fulfill_order(order.pk)
    assert len(fake_digiflazz.transaction_calls) == 1  # not bought again without staff


def test_configuration_fault_halts_every_further_delivery(fake_digiflazz, digiflazz_order, settings):
    settings.DIGIFLAZZ_API_KEY = "a-key-that-does-not-match"  # Digiflazz answers rc 41 (HTTP 400)
    order = digiflazz_order(quantity=2)
    report = fulfill_order(order.pk)

    halt = ProviderHalt.objects.get(provider="digiflazz")
    assert halt.code == "41"
    assert "Set DIGIFLAZZ_API_KEY" in halt.reason
    assert "delete the halt" in halt.reason
    assert len(fake_digiflazz.transaction_calls) == 1  # the second unit of the order was not sent
    assert report.skipped

    other = digiflazz_order(recipient="087800001230")
    report = fulfill_order(other.pk)
    assert len(fake_digiflazz.transaction_calls) == 1  # no call for another order either
    assert "halted" in report.skipped
    assert Delivery.objects.get(order=other).status == DeliveryStatus.WAITING
    assert paid_orders_reconcile() == []  # reconciliation does not queue halted work


# --- unknown outcomes --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["timeout", "connection", "502"])
@pytest.mark.parametrize("reached", [True, False], ids=["bought", "never-arrived"])
def test_unknown_outcome_is_pending_then_checked_with_the_same_ref_id(fake_digiflazz, digiflazz_order, kind, reached):
    fake_digiflazz.interrupt_next(kind, reached=reached)
    order = digiflazz_order(recipient="087800001230")
    ref = Delivery.objects.get(order=order).reference
    fulfill_order(order.pk)

    unit = Delivery.objects.get(order=order)
    assert unit.status == DeliveryStatus.PENDING
    assert unit.reference == ref
    [purchase] = DeliveryAttempt.objects.filter(delivery=unit)
    assert purchase.outcome == "pending"
    assert purchase.failure_scope == ""

    _make_due(order)
    fulfill_order(order.pk)
    unit.refresh_from_db()
    assert unit.status == DeliveryStatus.DELIVERED
    assert unit.serial == "1234567890"
    first, check = fake_digiflazz.transaction_calls
    assert check == first  # the same body: same ref_id, same signature
    assert check["ref_id"] == ref
    assert DeliveryAttempt.objects.filter(delivery=unit).last().kind == AttemptKind.CHECK
    assert len(fake_digiflazz.transactions) == 1  # bought once


def test_repeated_timeouts_stay_pending_and_keep_the_ref_id(fake_digiflazz, digiflazz_order):
    order = digiflazz_order()
    ref = Delivery.objects.get(order=order).reference
    for _ in range(3):
        fake_digiflazz.interrupt_next("timeout", reached=True)
        _make_due(order)
        fulfill_order(order.pk)
    unit = Delivery.objects.get(order=order)
    assert unit.status == DeliveryStatus.PENDING
    assert {body["ref_id"] for body in fake_digiflazz.transaction_calls} == {ref}
    assert not DeliveryAttempt.objects.filter(outcome="failed").exists()


# --- quantities -----------------------------------------------------------------------------------


def test_quantity_three_makes_three_transactions_with_stable_distinct_ref_ids(fake_digiflazz, digiflazz_order):
    order = digiflazz_order(recipient="087800001233", quantity=3)  # pending: they will be checked again
    refs = list(Delivery.objects.filter(order=order).order_by("unit_index").values_list("reference", flat=True))
    fulfill_order(order.pk)

    sent = [body["ref_id"] for body in fake_digiflazz.transaction_calls]
    assert sent == refs
    assert len(set(refs)) == 3

    _make_due(order)
    fulfill_order(order.pk)
    assert [body["ref_id"] for body in fake_digiflazz.transaction_calls[3:]] == refs  # checks reuse them
    assert len(fake_digiflazz.transactions) == 3


def test_retry_after_one_failure_sends_only_the_failed_unit(fake_digiflazz, digiflazz_order):
    order = digiflazz_order(recipient="087800001230", quantity=3)
    units = list(Delivery.objects.filter(order=order).order_by("unit_index"))
    fake_digiflazz.answer(units[1].reference, status="Gagal", rc="54")  # this purchase fails for good
    fulfill_order(order.pk)
    assert [u.status for u in Delivery.objects.filter(order=order).order_by("unit_index")] == [
        "delivered",
        "failed",
        "delivered",
    ]

    order_fulfillment_reset_for_retry(order_id=order.pk)  # what staff's "Retry fulfillment" does
    retried = Delivery.objects.get(pk=units[1].pk)
    assert retried.reference != units[1].reference
    fulfill_order(order.pk)

    assert [body["ref_id"] for body in fake_digiflazz.transaction_calls[3:]] == [retried.reference]
    assert Delivery.objects.filter(order=order, status="delivered").count() == 3
    assert _status(order) == "fulfilled"


# --- polling ----------------------------------------------------------------------------------------


def test_pending_unit_is_rechecked_by_reconciliation_after_the_interval(
    fake_digiflazz, digiflazz_order, monkeypatch, django_capture_on_commit_callbacks
):
    order = digiflazz_order(recipient="087800001233")
    ref = Delivery.objects.get(order=order).reference
    fulfill_order(order.pk)
    assert Delivery.objects.get(order=order).status == DeliveryStatus.PENDING

    # Before the minute is up nothing is due: reconciliation queues nothing.
    assert paid_orders_reconcile() == []

    # Digiflazz settles it; no callback comes. A minute later the reconciliation task asks again.
    fake_digiflazz.settle(ref, status="Sukses", rc="00", sn="SN-LATE")
    real_now = timezone.now
    later = real_now() + timedelta(seconds=61)
    monkeypatch.setattr(timezone, "now", lambda: later)
    Delivery.objects.filter(order=order).update(queued_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        queued = paid_orders_reconcile()
    assert queued == [order.pk]

    unit = Delivery.objects.get(order=order)
    assert unit.status == DeliveryStatus.DELIVERED
    assert unit.serial == "SN-LATE"
    assert [body["ref_id"] for body in fake_digiflazz.transaction_calls] == [ref, ref]
    assert _status(order) == "fulfilled"


def test_pending_transaction_older_than_90_days_is_not_checked(fake_digiflazz, digiflazz_order):
    order = digiflazz_order(recipient="087800001233")
    fulfill_order(order.pk)
    Delivery.objects.filter(order=order).update(reference_sent_at=timezone.now() - timedelta(days=91))
    _make_due(order)
    fulfill_order(order.pk)

    unit = Delivery.objects.get(order=order)
    assert unit.status == DeliveryStatus.FAILED
    assert unit.failure_scope == FailureScope.PERMANENT
    assert len(fake_digiflazz.transaction_calls) == 1  # the same ref_id would have bought again
