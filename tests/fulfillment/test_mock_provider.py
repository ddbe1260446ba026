"""The Mock provider: its configured rates and delays, and idempotency per reference."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from fulfillment.models import MockLedgerEntry
from fulfillment.providers import mock as mock_module
from fulfillment.providers.base import FailureScope, FulfillmentParams, Outcome
from fulfillment.providers.mock import MockProvider


def params(n: int | str = 1, **overrides) -> FulfillmentParams:
    values = {"reference": f"ref-{n}", "unit_key": f"1-1-{n}", "sku": "xld10", "recipient": "0878", "order_id": 1}
    values.update(overrides)
    return FulfillmentParams(**values)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The delays the Mock asks for, captured instead of slept."""
    requested: list[float] = []
    monkeypatch.setattr(mock_module.time, "sleep", requested.append)
    return requested


# --- rates -------------------------------------------------------------------------------------


def test_success_rate_is_observed_over_many_purchases(db, sleeps):
    draws, rate = 2000, 0.95
    provider = MockProvider(success_rate=rate, seed=20240611)

    outcomes = [provider.fulfill(params(n)).outcome for n in range(draws)]

    observed = outcomes.count(Outcome.DELIVERED) / draws
    # Binomial: sd = sqrt(0.95 * 0.05 / 2000) ~= 0.0049. A tolerance of 0.02 is ~4 sd, so a
    # correct provider with any seed fails this less than once in 10,000 runs, while a provider
    # that ignored the rate (0.90 or 1.00) would be ~10 sd away and always fail.
    tolerance = 4 * math.sqrt(rate * (1 - rate) / draws)
    assert abs(observed - rate) <= tolerance
    assert set(outcomes) == {Outcome.DELIVERED, Outcome.FAILED}
    assert MockLedgerEntry.objects.count() == draws


def test_pending_rate_is_observed_and_success_applies_to_the_rest(db, sleeps):
    draws = 2000
    provider = MockProvider(success_rate=0.5, pending_rate=0.2, seed=7)

    outcomes = [provider.fulfill(params(n)).outcome for n in range(draws)]

    # Expected shares: pending 0.2, delivered 0.8 * 0.5 = 0.4, failed 0.4; each within ~4 sd.
    for outcome, share in ((Outcome.PENDING, 0.2), (Outcome.DELIVERED, 0.4), (Outcome.FAILED, 0.4)):
        tolerance = 4 * math.sqrt(share * (1 - share) / draws)
        assert abs(outcomes.count(outcome) / draws - share) <= tolerance, outcome


@pytest.mark.parametrize(("rate", "expected"), [(1.0, Outcome.DELIVERED), (0.0, Outcome.FAILED)])
def test_extreme_rates_are_exact(db, sleeps, rate, expected):
    provider = MockProvider(success_rate=rate, seed=1)
    assert {provider.fulfill(params(n)).outcome for n in range(50)} == {expected}


def test_a_seed_makes_the_sequence_repeatable(db, sleeps):
    def run(seed: int, prefix: str) -> list[str]:
        provider = MockProvider(success_rate=0.5, pending_rate=0.1, delay_min=0.1, delay_max=0.9, seed=seed)
        return [provider.fulfill(params(f"{prefix}{n}")).outcome for n in range(100)]

    first = run(99, "a")
    first_delays = list(sleeps)
    sleeps.clear()
    second = run(99, "b")

    assert first == second
    assert sleeps == first_delays
    sleeps.clear()
    assert run(100, "c") != first


def test_delays_stay_within_the_bounds(db, sleeps):
    provider = MockProvider(delay_min=1.0, delay_max=3.0, seed=5)

    for n in range(300):
        provider.fulfill(params(n))

    assert len(sleeps) == 300
    assert all(1.0 <= delay <= 3.0 for delay in sleeps)
    # Uniform over the range, not a constant: both ends are approached.
    assert min(sleeps) < 1.1 and max(sleeps) > 2.9


def test_from_settings_uses_the_mock_settings(settings, db, sleeps):
    settings.MOCK_FULFILLMENT_DELAY_MIN = 0.5
    settings.MOCK_FULFILLMENT_DELAY_MAX = 0.75
    settings.MOCK_FULFILLMENT_SUCCESS_RATE = 0.0
    provider = MockProvider.from_settings()

    result = provider.fulfill(params())

    assert result.outcome == Outcome.FAILED
    assert 0.5 <= sleeps[0] <= 0.75


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay_min": 2.0, "delay_max": 1.0}, "0 <= min <= max"),
        ({"delay_min": -1.0}, "0 <= min <= max"),
        ({"success_rate": 1.1}, "success rate must be between 0 and 1"),
        ({"pending_rate": -0.1}, "pending rate must be between 0 and 1"),
    ],
)
def test_invalid_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MockProvider(**kwargs)


def test_failures_are_retryable_business_failures(db, sleeps):
    result = MockProvider(success_rate=0.0).fulfill(params())
    assert (result.outcome, result.failure_scope, result.retryable) == (Outcome.FAILED, FailureScope.RETRYABLE, True)
    assert result.serial == ""


# --- idempotency -------------------------------------------------------------------------------


def test_same_reference_twice_buys_once(db, sleeps):
    provider = MockProvider(seed=3)

    first = provider.fulfill(params())
    second = provider.fulfill(params())
    third = provider.check_status(params())

    assert first.outcome == second.outcome == third.outcome == Outcome.DELIVERED
    assert first.serial == second.serial == third.serial == "MOCK-ref-1"
    entry = MockLedgerEntry.objects.get()
    assert (entry.reference, entry.unit_key, entry.calls) == ("ref-1", "1-1-1", 3)
    assert len(sleeps) == 1  # only the real purchase takes time


def test_a_repeated_failure_stays_a_failure(db, sleeps):
    provider = MockProvider(success_rate=0.0)
    provider.fulfill(params())
    provider.success_rate = 1.0  # the purchase under this reference already failed
    assert provider.fulfill(params()).outcome == Outcome.FAILED
    assert MockLedgerEntry.objects.get().calls == 2


def test_same_reference_across_instances_buys_once(db, sleeps):
    # The ledger is in the database: a restarted worker (a new instance) sees the purchase.
    MockProvider().fulfill(params())
    assert MockProvider(success_rate=0.0).fulfill(params()).outcome == Outcome.DELIVERED
    assert MockLedgerEntry.objects.count() == 1


def test_new_reference_for_the_same_unit_is_a_new_purchase(db, sleeps):
    provider = MockProvider()
    provider.fulfill(params(reference="first"))
    provider.fulfill(params(reference="second"))
    assert sorted(MockLedgerEntry.objects.filter(unit_key="1-1-1").values_list("reference", flat=True)) == [
        "first",
        "second",
    ]


def test_concurrent_purchase_with_the_same_reference(db, sleeps, monkeypatch):
    # Two workers both saw no ledger entry; the other one inserted first. Ours hits the unique
    # reference (IntegrityError) and must answer the other purchase, not buy again.
    winner = MockProvider(seed=1).fulfill(params())
    MockLedgerEntry.objects.filter(reference="ref-1").update(calls=1)
    provider = MockProvider(success_rate=0.0, seed=2)
    real_repeat = provider._repeat
    looks = []

    def repeat_unseen_first(reference):
        looks.append(reference)
        return None if len(looks) == 1 else real_repeat(reference)

    monkeypatch.setattr(provider, "_repeat", repeat_unseen_first)
    real_create = MockLedgerEntry.objects.create
    raised = []

    def create(**kwargs):
        try:
            return real_create(**kwargs)
        except IntegrityError:
            raised.append(kwargs["reference"])
            raise

    monkeypatch.setattr(MockLedgerEntry.objects, "create", create)

    result = provider.fulfill(params())

    assert raised == ["ref-1"]
    assert (result.outcome, result.serial) == (winner.outcome, winner.serial) == (Outcome.DELIVERED, "MOCK-ref-1")
    entry = MockLedgerEntry.objects.get()
    assert (entry.outcome, entry.calls) == (Outcome.DELIVERED, 2)
    # The database is still usable after the failed insert (savepoint rolled back).
    assert MockLedgerEntry.objects.count() == 1


# --- pending purchases ---------------------------------------------------------------------------


def test_pending_purchase_resolves_on_a_later_check_with_the_same_serial(db, sleeps):
    provider = MockProvider(pending_rate=1.0, delay_min=2.0, delay_max=2.0)

    first = provider.fulfill(params())
    assert first.outcome == Outcome.PENDING and first.serial == ""
    assert provider.check_status(params()).outcome == Outcome.PENDING  # not yet resolved

    MockLedgerEntry.objects.update(resolve_at=timezone.now() - timedelta(seconds=1))
    resolved = provider.check_status(params())
    again = provider.check_status(params())

    assert (resolved.outcome, resolved.serial) == (Outcome.DELIVERED, "MOCK-ref-1")
    assert (again.outcome, again.serial) == (Outcome.DELIVERED, "MOCK-ref-1")
    entry = MockLedgerEntry.objects.get()
    assert (entry.outcome, entry.calls) == (Outcome.DELIVERED, 4)


def test_pending_resolves_after_its_own_delay(db, sleeps):
    provider = MockProvider(pending_rate=1.0, delay_min=3.0, delay_max=3.0)
    before = timezone.now()
    provider.fulfill(params())
    entry = MockLedgerEntry.objects.get()
    assert before + timedelta(seconds=3) <= entry.resolve_at <= timezone.now() + timedelta(seconds=3)
