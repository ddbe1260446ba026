"""A provider that is down for a while, then recovers: the Mock supplier behind a flaky link.

Registered in the worker processes with
FULFILLMENT_EXTRA_PROVIDERS="flaky=tests.integration.providers.FlakyProvider" and selected with
FULFILLMENT_PROVIDER=flaky. Until the epoch time a test stores in the Redis key
`flaky:down-until` (shared by every process; absent means up) it misbehaves as FLAKY_MODE says:

* ``fail``: the supplier answers "temporarily unavailable" (a retryable FAILED result). Nothing
  is bought, as the contract requires of a final failure.
* ``timeout``: no answer at all (an exception, the contract's "unknown outcome"). For half of
  the references (chosen by the reference, so the same on every process) the purchase did reach
  the supplier and is in the ledger: only a re-check with the same reference finds it.

In every mode, while the key `flaky:deposit-empty` is set every new purchase is refused as a
SHOP fault (the shop's deposit is used up; nothing is bought), and the account check reports the
deposit stored in `flaky:balance`: a test "tops up" by raising it and deleting the key. While
`flaky:deposit-metered` is set instead, every new purchase costs PRICE out of `flaky:balance`
(atomically) and is refused the same way when the balance does not cover it: a partial top-up
pays for only some units. While `flaky:checks-down` is set, status checks get no answer (the
purchase under them stays unknown). FLAKY_MIN_CHECK_SECONDS sets the provider's minimum interval
between two requests about one reference (Digiflazz: 60 s), 0 by default.

After that it is the Mock provider, idempotent per reference through its ledger. Every call is
counted in Redis (the broker database, flushed per test), per unit and in total, so a test can
bound how hard the engine hammered the provider.

The Redis client is made once, in the constructor. It used to be made on first use, and two
worker threads making their first call together each made one: the client that lost the race
was garbage-collected, and redis-py closes a collected client's connections, including the one
the other thread's pipeline was using. That call then raised before it was counted, and the
engine rightly recorded it as an unknown outcome: one more attempt than counted calls.
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta

from django.conf import settings

from fulfillment.models import MockLedgerEntry
from fulfillment.providers.base import AccountStatus, FailureScope, FulfillmentParams, FulfillmentResult
from fulfillment.providers.mock import MockProvider

DOWN_UNTIL_KEY = "flaky:down-until"
CALLS_KEY = "flaky:calls"
UNIT_CALLS_KEY = "flaky:unit-calls"
DEPOSIT_EMPTY_KEY = "flaky:deposit-empty"
BALANCE_KEY = "flaky:balance"
DEPOSIT_CODE = "FLAKY_DEPOSIT"
DEPOSIT_METERED_KEY = "flaky:deposit-metered"
CHECKS_DOWN_KEY = "flaky:checks-down"
PRICE = 10000  # what one unit costs out of a metered deposit

# Takes ARGV[1] from the balance when it covers it; returns what is left, or -1 (nothing taken).
_CHARGE = """
local balance = tonumber(redis.call('GET', KEYS[1]) or '0')
local price = tonumber(ARGV[1])
if balance < price then return -1 end
return redis.call('DECRBY', KEYS[1], price)
"""


class FlakyProvider(MockProvider):
    name = "flaky"
    deposit_fault_codes = frozenset({DEPOSIT_CODE})

    def __init__(self, *, mode: str, **mock_options) -> None:
        if mode not in ("fail", "timeout"):
            raise ValueError(f"FLAKY_MODE must be 'fail' or 'timeout', not {mode!r}.")
        import redis

        super().__init__(**mock_options)
        self.mode = mode
        # Shared by every worker thread (redis-py clients are thread-safe); see the module docstring.
        self._redis = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=10)

    @classmethod
    def from_settings(cls) -> FlakyProvider:
        provider = cls(
            mode=os.environ.get("FLAKY_MODE", "fail"),
            delay_min=settings.MOCK_FULFILLMENT_DELAY_MIN,
            delay_max=settings.MOCK_FULFILLMENT_DELAY_MAX,
            success_rate=settings.MOCK_FULFILLMENT_SUCCESS_RATE,
            pending_rate=settings.MOCK_FULFILLMENT_PENDING_RATE,
        )
        provider.min_check_interval = timedelta(seconds=float(os.environ.get("FLAKY_MIN_CHECK_SECONDS", "0")))
        return provider

    def _count(self, kind: str, params: FulfillmentParams) -> None:
        pipe = self._redis.pipeline()
        pipe.incr(CALLS_KEY)
        pipe.hincrby(UNIT_CALLS_KEY, f"{params.unit_key}:{kind}")
        pipe.execute()

    def _down(self) -> bool:
        return time.time() < float(self._redis.get(DOWN_UNTIL_KEY) or 0)

    @staticmethod
    def _reached_supplier(reference: str) -> bool:
        return hashlib.sha256(reference.encode()).digest()[0] % 2 == 0

    def _balance(self) -> int:
        return int(self._redis.get(BALANCE_KEY) or 0)

    def check_account(self) -> AccountStatus:
        balance = self._balance()
        return AccountStatus(ok=True, balance=balance, message=f"Flaky deposit {balance}.")

    def fulfill(self, params: FulfillmentParams) -> FulfillmentResult:
        self._count("fulfill", params)
        bought = MockLedgerEntry.objects.filter(reference=params.reference).exists()
        if self._redis.exists(DEPOSIT_EMPTY_KEY) and not bought:
            return FulfillmentResult.failed(
                scope=FailureScope.SHOP, code=DEPOSIT_CODE, message="Flaky: deposit used up", balance=self._balance()
            )
        if self._redis.exists(DEPOSIT_METERED_KEY) and not bought:
            if self._redis.eval(_CHARGE, 1, BALANCE_KEY, PRICE) < 0:
                return FulfillmentResult.failed(
                    scope=FailureScope.SHOP, code=DEPOSIT_CODE, message="Flaky: deposit short", balance=self._balance()
                )
        if self._down():
            if self.mode == "fail":
                return FulfillmentResult.failed(
                    scope=FailureScope.RETRYABLE, code="FLAKY_DOWN", message="Flaky: supplier unavailable"
                )
            if self._reached_supplier(params.reference):
                super().fulfill(params)  # bought; the answer is lost on the way back
            raise TimeoutError("Flaky: no answer from the supplier")
        return super().fulfill(params)

    def check_status(self, params: FulfillmentParams) -> FulfillmentResult:
        self._count("check", params)
        if self._down() or self._redis.exists(CHECKS_DOWN_KEY):
            raise TimeoutError("Flaky: no answer from the supplier")
        # The Mock ledger answers for a known reference, and buys only if it never got there.
        return super().fulfill(params)
