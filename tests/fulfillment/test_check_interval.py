"""Digiflazz asks buyers not to repeat a request about one transaction within a minute. The delivery
run keeps that rule at the one place a reference is asked about again, whatever made the unit
due: a halt being lifted, a reconciliation sweep, a staff retry. Driven with a fake clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus, ProviderHalt
from fulfillment.services import fulfill_order, paid_orders_reconcile, provider_accounts_check

pytestmark = pytest.mark.django_db

MINUTE = timedelta(seconds=60)


@pytest.fixture
def clock(time_machine):
    """A clock that stands still until the test moves it."""
    time_machine.move_to(timezone.now(), tick=False)
    return time_machine


@pytest.fixture
def pending_then_halted(fake_digiflazz, digiflazz_order, clock):
    """A unit whose purchase answered 502 (PENDING, same ref_id), then another order meeting an
    empty deposit (rc 44) a second later: the provider is halted. Returns (pending unit, the
    time of its one request, the held order)."""
    first = digiflazz_order(recipient="0811")
    fake_digiflazz.interrupt_next("502", reached=True)
    asked_at = timezone.now()
    fulfill_order(first.pk)
    unit = Delivery.objects.get(order=first)
    assert (unit.status, unit.reference_sent_at) == (DeliveryStatus.PENDING, asked_at)

    clock.shift(1)
    fake_digiflazz.deposit = 0
    fake_digiflazz.answer("0812", status="Gagal", rc="44", message="Saldo tidak cukup")
    held = digiflazz_order(recipient="0812")
    fulfill_order(held.pk)
    assert ProviderHalt.objects.filter(code="44").exists()
    return unit, asked_at, held


def _requests_about(fake_digiflazz, reference: str) -> int:
    return sum(1 for body in fake_digiflazz.transaction_calls if body["ref_id"] == reference)


def test_lifting_a_halt_leaves_a_pending_unit_on_its_own_schedule(fake_digiflazz, pending_then_halted, clock):
    unit, asked_at, held = pending_then_halted
    scheduled = unit.next_attempt_at
    assert scheduled >= asked_at + MINUTE

    clock.shift(30)  # 31 s after the 502: the deposit is topped up and the check lifts the halt
    fake_digiflazz.deposit = 500000
    fake_digiflazz.answer("0812", status="Sukses", rc="00")
    [report] = provider_accounts_check()
    assert report.lifted

    unit.refresh_from_db()
    assert unit.next_attempt_at == scheduled  # not made due by the lift
    assert Delivery.objects.get(order=held).next_attempt_at <= timezone.now()  # the waiting one is
    paid_orders_reconcile()
    fulfill_order(unit.order_id)
    assert _requests_about(fake_digiflazz, unit.reference) == 1


def test_a_check_made_due_too_soon_waits_for_the_minute_and_is_then_sent_once(
    fake_digiflazz, pending_then_halted, clock
):
    unit, asked_at, _held = pending_then_halted
    ProviderHalt.objects.all().delete()
    clock.shift(30)
    # Whatever made it due (an older version's lift, a sweep, a staff retry): it is not asked yet.
    Delivery.objects.filter(pk=unit.pk).update(next_attempt_at=timezone.now())
    fulfill_order(unit.order_id)

    unit.refresh_from_db()
    assert _requests_about(fake_digiflazz, unit.reference) == 1
    assert (unit.status, unit.claim_token, unit.purchase_attempts, unit.status_checks) == ("pending", "", 1, 0)
    assert unit.next_attempt_at == asked_at + MINUTE  # due again exactly when the rule allows

    clock.move_to(asked_at + MINUTE - timedelta(microseconds=1), tick=False)
    Delivery.objects.filter(pk=unit.pk).update(next_attempt_at=timezone.now())
    fulfill_order(unit.order_id)
    assert _requests_about(fake_digiflazz, unit.reference) == 1  # still inside the minute

    clock.move_to(asked_at + MINUTE, tick=False)
    Delivery.objects.filter(pk=unit.pk).update(next_attempt_at=timezone.now())
    fulfill_order(unit.order_id)
    assert _requests_about(fake_digiflazz, unit.reference) == 2
    unit.refresh_from_db()
    assert unit.status == DeliveryStatus.DELIVERED


def test_the_minute_counts_from_the_last_check_not_the_purchase(fake_digiflazz, digiflazz_order, clock):
    order = digiflazz_order(recipient="087800001233")  # documented: pending, later settled
    fulfill_order(order.pk)
    unit = Delivery.objects.get(order=order)
    clock.shift(90)
    Delivery.objects.filter(pk=unit.pk).update(next_attempt_at=timezone.now())
    checked_at = timezone.now()
    fulfill_order(order.pk)  # the first check: still pending
    assert _requests_about(fake_digiflazz, unit.reference) == 2

    clock.shift(59)
    Delivery.objects.filter(pk=unit.pk).update(next_attempt_at=timezone.now())
    fulfill_order(order.pk)
    unit.refresh_from_db()
    assert _requests_about(fake_digiflazz, unit.reference) == 2
    assert unit.next_attempt_at == checked_at + MINUTE


def test_a_sending_unit_whose_claim_lapsed_inside_the_minute_waits_on_its_claim(
    fake_digiflazz, digiflazz_order, clock, settings
):
    # A worker died right after sending; with a claim shorter than the minute, the next run must
    # still not ask about the ref_id before the minute is over.
    settings.FULFILLMENT_CLAIM_SECONDS = 20
    order = digiflazz_order()
    sent_at = timezone.now()
    Delivery.objects.filter(order=order).update(
        status=DeliveryStatus.SENDING,
        provider="digiflazz",
        reference_sent_at=sent_at,
        purchase_attempts=1,
        claim_token="dead-worker",
        claim_expires_at=sent_at + timedelta(seconds=20),
    )
    clock.shift(21)
    fulfill_order(order.pk)
    unit = Delivery.objects.get(order=order)
    assert fake_digiflazz.transaction_calls == []
    assert (unit.status, unit.claim_expires_at) == (DeliveryStatus.SENDING, sent_at + MINUTE)

    clock.move_to(sent_at + MINUTE + timedelta(seconds=1), tick=False)
    paid_orders_reconcile()  # the sweep finds the expired claim
    fulfill_order(order.pk)
    unit.refresh_from_db()
    assert len(fake_digiflazz.transaction_calls) == 1
    assert unit.status == DeliveryStatus.DELIVERED
