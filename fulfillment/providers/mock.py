"""The Mock provider: behaves like a real supplier without one.

Each purchase waits a random delay (uniform between MOCK_FULFILLMENT_DELAY_MIN and _MAX
seconds) and succeeds with probability MOCK_FULFILLMENT_SUCCESS_RATE; failures are
retryable (like "out of stock"). With MOCK_FULFILLMENT_PENDING_RATE a share of purchases
answer PENDING and resolve on a later check. MOCK_FULFILLMENT_SEED makes the sequence
repeatable. Recipients listed in MOCK_FULFILLMENT_FAIL_RECIPIENTS (an entry ending in "*" is a
prefix) are refused permanently, like a wrong phone number: an undeliverable unit on demand.

Its ledger (MockLedgerEntry) lives in the database, keyed by reference, so the provider is
idempotent across processes and restarts, and tests and benchmarks can count how many
times each unit was really delivered.

Faults that are not the unit's, for tests and demos: MOCK_FULFILLMENT_SHOP_FAULT=deposit refuses
every new purchase as a SHOP fault (the deposit is used up; the account check reports 0) and
=credentials as a CONFIGURATION fault (the account check is refused too); SKUs listed in
MOCK_FULFILLMENT_OUT_OF_STOCK_SKUS are refused as a PRODUCT fault. Nothing is bought then. Unset
the setting and restart the worker: the periodic account check lifts the halt, a probe the pause.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from typing import ClassVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from fulfillment.models import MockLedgerEntry
from fulfillment.providers.base import (
    AccountStatus,
    FailureScope,
    FulfillmentParams,
    FulfillmentProvider,
    FulfillmentResult,
    Outcome,
    release_database_connection,
)

SHOP_FAULTS = ("", "deposit", "credentials")
DEPOSIT_CODE = "MOCK_DEPOSIT"
CREDENTIALS_CODE = "MOCK_CREDENTIALS"
OUT_OF_STOCK_CODE = "MOCK_OUT_OF_STOCK"
#: What the Mock's account check reports as the deposit while no deposit fault is simulated.
BALANCE = 1_000_000


class MockProvider(FulfillmentProvider):
    name = "mock"
    deposit_fault_codes: ClassVar[frozenset[str]] = frozenset({DEPOSIT_CODE})

    def __init__(
        self,
        *,
        delay_min: float = 0.0,
        delay_max: float = 0.0,
        success_rate: float = 1.0,
        pending_rate: float = 0.0,
        seed: int | None = None,
        shop_fault: str = "",
        out_of_stock_skus: frozenset[str] | set[str] | list[str] = frozenset(),
    ) -> None:
        if shop_fault not in SHOP_FAULTS:
            raise ValueError(f"Mock shop fault must be one of {', '.join(map(repr, SHOP_FAULTS))}, not {shop_fault!r}.")
        self.shop_fault = shop_fault
        self.out_of_stock_skus = frozenset(out_of_stock_skus)
        if not 0 <= delay_min <= delay_max:
            raise ValueError(f"Mock delay range must satisfy 0 <= min <= max, got {delay_min}..{delay_max}.")
        for label, rate in (("success rate", success_rate), ("pending rate", pending_rate)):
            if not 0 <= rate <= 1:
                raise ValueError(f"Mock {label} must be between 0 and 1, got {rate}.")
        self.delay_min = delay_min
        self.delay_max = delay_max
        self.success_rate = success_rate
        self.pending_rate = pending_rate
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()

    @classmethod
    def configuration_errors(cls) -> list[str]:
        errors = []
        low, high = settings.MOCK_FULFILLMENT_DELAY_MIN, settings.MOCK_FULFILLMENT_DELAY_MAX
        if not 0 <= low <= high:
            errors.append(
                f"MOCK_FULFILLMENT_DELAY_MIN ({low}) must be >= 0 and <= MOCK_FULFILLMENT_DELAY_MAX ({high})."
            )
        for name in ("MOCK_FULFILLMENT_SUCCESS_RATE", "MOCK_FULFILLMENT_PENDING_RATE"):
            if not 0 <= getattr(settings, name) <= 1:
                errors.append(f"{name} must be between 0 and 1.")
        fault = getattr(settings, "MOCK_FULFILLMENT_SHOP_FAULT", "")
        if fault not in SHOP_FAULTS:
            errors.append(f"MOCK_FULFILLMENT_SHOP_FAULT must be empty, deposit or credentials, not {fault!r}.")
        return errors

    @classmethod
    def from_settings(cls) -> MockProvider:
        return cls(
            delay_min=settings.MOCK_FULFILLMENT_DELAY_MIN,
            delay_max=settings.MOCK_FULFILLMENT_DELAY_MAX,
            success_rate=settings.MOCK_FULFILLMENT_SUCCESS_RATE,
            pending_rate=settings.MOCK_FULFILLMENT_PENDING_RATE,
            seed=settings.MOCK_FULFILLMENT_SEED,
            shop_fault=getattr(settings, "MOCK_FULFILLMENT_SHOP_FAULT", ""),
            out_of_stock_skus=getattr(settings, "MOCK_FULFILLMENT_OUT_OF_STOCK_SKUS", ()),
        )

    def _draw(self) -> tuple[float, float]:
        with self._random_lock:
            return self._random.uniform(self.delay_min, self.delay_max), self._random.random()

    def fulfill(self, params: FulfillmentParams) -> FulfillmentResult:
        if self.shop_fault == "credentials":
            return FulfillmentResult.failed(
                scope=FailureScope.CONFIGURATION,
                code=CREDENTIALS_CODE,
                message="Mock: credentials refused (unset MOCK_FULFILLMENT_SHOP_FAULT and restart the worker).",
            )
        existing = self._repeat(params.reference)
        if existing is not None:
            return existing
        # Refused before anything is bought, like a real supplier's deposit or stock check.
        if self.shop_fault == "deposit":
            return FulfillmentResult.failed(
                scope=FailureScope.SHOP,
                code=DEPOSIT_CODE,
                message="Mock: the deposit is used up (unset MOCK_FULFILLMENT_SHOP_FAULT and restart the worker).",
                balance=0,
            )
        if params.sku in self.out_of_stock_skus:
            return FulfillmentResult.failed(
                scope=FailureScope.PRODUCT,
                code=OUT_OF_STOCK_CODE,
                message=f"Mock: {params.sku} is out of stock (see MOCK_FULFILLMENT_OUT_OF_STOCK_SKUS).",
            )
        delay, draw = self._draw()
        # A real provider holds no database connection while the supplier works; give back the
        # one the ledger look-up took, or the pool's size would cap the calls in flight.
        release_database_connection()
        time.sleep(delay)
        if _refused_recipient(params.recipient):
            outcome = Outcome.FAILED
        elif draw < self.pending_rate:
            outcome = Outcome.PENDING
        elif draw < self.pending_rate + (1 - self.pending_rate) * self.success_rate:
            outcome = Outcome.DELIVERED
        else:
            outcome = Outcome.FAILED
        try:
            with transaction.atomic():
                entry = MockLedgerEntry.objects.create(
                    reference=params.reference,
                    unit_key=params.unit_key,
                    sku=params.sku,
                    recipient=params.recipient,
                    outcome=outcome,
                    serial=f"MOCK-{params.reference}" if outcome == Outcome.DELIVERED else "",
                    resolve_at=timezone.now() + timedelta(seconds=delay) if outcome == Outcome.PENDING else None,
                )
        except IntegrityError:
            # A concurrent call with the same reference won the race: its purchase is the purchase.
            return self._repeat(params.reference) or FulfillmentResult.pending(message="Mock: concurrent purchase")
        return self._result(entry)

    def check_status(self, params: FulfillmentParams) -> FulfillmentResult:
        if self.shop_fault == "credentials":
            return FulfillmentResult.refused(
                scope=FailureScope.CONFIGURATION, code=CREDENTIALS_CODE, message="Mock: credentials refused."
            )
        # The ledger answers for a purchase it made; a reference it never saw is bought now, as
        # the contract's idempotent fulfill() would.
        return self.fulfill(params)

    def check_account(self) -> AccountStatus:
        if self.shop_fault == "credentials":
            return AccountStatus(ok=False, code=CREDENTIALS_CODE, message="Mock: credentials refused.")
        balance = 0 if self.shop_fault == "deposit" else BALANCE
        return AccountStatus(ok=True, balance=balance, message=f"Mock deposit {balance:,}.")

    @classmethod
    def fault_cleared(cls, *, code: str, account: AccountStatus, lowest_balance: int | None) -> bool:
        # DEPOSIT_CODE (deposit_fault_codes) lifts by what the balance covers: services.funding.
        return code == CREDENTIALS_CODE and account.ok

    def _repeat(self, reference: str) -> FulfillmentResult | None:
        entry = MockLedgerEntry.objects.filter(reference=reference).first()
        if entry is None:
            return None
        MockLedgerEntry.objects.filter(pk=entry.pk).update(calls=F("calls") + 1)
        if entry.outcome == Outcome.PENDING and entry.resolve_at and entry.resolve_at <= timezone.now():
            serial = f"MOCK-{reference}"
            # Conditional: two concurrent checks resolve the purchase once.
            MockLedgerEntry.objects.filter(pk=entry.pk, outcome=Outcome.PENDING).update(
                outcome=Outcome.DELIVERED, serial=serial
            )
            entry.refresh_from_db()
        return self._result(entry)

    @staticmethod
    def _result(entry: MockLedgerEntry) -> FulfillmentResult:
        raw = {"reference": entry.reference, "outcome": entry.outcome, "serial": entry.serial}
        if entry.outcome == Outcome.DELIVERED:
            return FulfillmentResult.delivered(serial=entry.serial, code="00", message="Mock: delivered", raw=raw)
        if entry.outcome == Outcome.PENDING:
            return FulfillmentResult.pending(code="03", message="Mock: pending at supplier", raw=raw)
        if _refused_recipient(entry.recipient):
            return FulfillmentResult.failed(
                scope=FailureScope.PERMANENT,
                code="MOCK_REFUSED",
                message="Mock: recipient refused (MOCK_FULFILLMENT_FAIL_RECIPIENTS)",
                raw=raw,
            )
        return FulfillmentResult.failed(
            scope=FailureScope.RETRYABLE,
            code="MOCK_UNAVAILABLE",
            message="Mock: supplier temporarily out of stock",
            raw=raw,
        )


def _refused_recipient(recipient: str) -> bool:
    for entry in getattr(settings, "MOCK_FULFILLMENT_FAIL_RECIPIENTS", ()):
        entry = entry.strip()
        if entry and (recipient.startswith(entry[:-1]) if entry.endswith("*") else recipient == entry):
            return True
    return False
