"""The contract every fulfillment provider keeps, and the typed values it takes and returns.

A provider turns one *unit* (one piece of goods for one recipient) into a purchase at an
outside supplier. The delivery services (fulfillment.services) decide when to call it; the
provider only speaks the supplier's protocol. Every provider MUST:

1. **Be idempotent per reference.** `params.reference` identifies one purchase. Calling
   `fulfill()` again with the same reference must never buy again: it returns the outcome of
   the purchase already made (or makes it, if the first call never reached the supplier).
   The services rely on this to recover from timeouts and crashed workers by asking again
   with the same reference. A new reference is only ever issued after a *final* failure.
2. **Never raise for a business failure.** Declined, out of stock, wrong number, bad
   signature: all are a `FulfillmentResult` with `outcome=FAILED` and a `failure_scope` that
   says whether a later retry can help. An exception means "I do not know what happened",
   and the services treat it exactly like a PENDING result (re-check, same reference).
3. **Report unknown outcomes as PENDING.** A timeout, a dropped connection or a 5xx without
   a readable answer may have bought the goods; the result is PENDING, never FAILED.
   `check_status()` resolves it later with the same reference.
4. **Keep secrets out of results.** `raw` is stored for audit and shown in the admin; strip
   API keys, signatures and passwords from it. Exception messages must not carry them either.

To add a provider: subclass FulfillmentProvider in its own module, implement `fulfill()`
(and `check_status()` if the supplier has a cheaper status call), list missing settings in
`configuration_errors()`, and register the dotted path under a name in
`settings.FULFILLMENT_PROVIDERS` (or `FULFILLMENT_EXTRA_PROVIDERS` in the environment).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from django.db import connection

#: Failure code of a unit whose outcome stayed unknown past the provider's check window.
UNKNOWN_OUTCOME_CODE = "check_window_expired"


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    PENDING = "pending"
    FAILED = "failed"


class FailureScope(enum.StrEnum):
    """For a FAILED result: what a retry could achieve."""

    # Worth trying again later with a new purchase (out of stock, supplier disruption...).
    RETRYABLE = "retryable"
    # This unit will not succeed as it is (wrong number, unknown SKU): needs a person.
    PERMANENT = "permanent"
    # The shop's own setup is wrong (credentials, IP allow-list): every unit would fail the
    # same way, so deliveries through this provider stop until staff fix it.
    CONFIGURATION = "configuration"


@dataclass(frozen=True)
class FulfillmentParams:
    """One unit to deliver."""

    reference: str  # identifies this purchase at the provider; same reference = same purchase
    unit_key: str  # identifies the unit across purchases (order-item-unit), for audit
    sku: str  # the provider's product code
    recipient: str  # phone number, game account id...
    order_id: int
    max_price: int | None = None  # highest acceptable provider price, when the shop set one
    first_sent_at: datetime | None = None  # when this reference was first sent, for re-checks


@dataclass(frozen=True)
class FulfillmentResult:
    outcome: Outcome
    code: str = ""
    message: str = ""
    serial: str = ""  # the delivered serial number / voucher code
    failure_scope: FailureScope | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # provider's answer, secrets removed
    retry_after: float | None = None  # seconds the provider asks us to wait before the next attempt

    @property
    def retryable(self) -> bool:
        """Whether a later attempt could succeed (pending outcomes are always re-checked)."""
        return self.outcome == Outcome.PENDING or self.failure_scope == FailureScope.RETRYABLE

    @classmethod
    def delivered(cls, *, serial: str = "", code: str = "", message: str = "", raw: dict | None = None):
        return cls(Outcome.DELIVERED, code=code, message=message, serial=serial, raw=raw or {})

    @classmethod
    def pending(cls, *, code: str = "", message: str = "", raw: dict | None = None):
        return cls(Outcome.PENDING, code=code, message=message, raw=raw or {})

    @classmethod
    def failed(
        cls,
        *,
        scope: FailureScope,
        code: str = "",
        message: str = "",
        raw: dict | None = None,
        retry_after: float | None = None,
    ):
        return cls(
            Outcome.FAILED, code=code, message=message, failure_scope=scope, raw=raw or {}, retry_after=retry_after
        )


class FulfillmentProvider(ABC):
    """Base class of every provider. See the module docstring for the contract."""

    #: The name the provider is registered under (settings.FULFILLMENT_PROVIDERS key).
    name: ClassVar[str]
    #: Minimum time between two status checks of the same reference.
    min_check_interval: ClassVar[timedelta] = timedelta(seconds=0)
    #: After this age a reference must not be checked again (None: no limit).
    max_check_age: ClassVar[timedelta | None] = None
    #: Failure codes after which the goods may still have been delivered: staff retries leave
    #: such units alone until someone has checked with the provider.
    review_before_rebuy_codes: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def configuration_errors(cls) -> list[str]:
        """Problems with this provider's settings; each says which variable to set."""
        return []

    @classmethod
    def from_settings(cls) -> FulfillmentProvider:
        """Build an instance from Django settings."""
        return cls()

    @abstractmethod
    def fulfill(self, params: FulfillmentParams) -> FulfillmentResult:
        """Buy the unit, or return the outcome of the purchase already made under this reference."""

    def check_status(self, params: FulfillmentParams) -> FulfillmentResult:
        """Resolve a PENDING or unknown outcome. Must not buy again: same reference.

        The default relies on rule 1 (idempotent fulfill); override when the supplier has a
        dedicated status call.
        """
        return self.fulfill(params)


def release_database_connection() -> None:
    """Hand this thread's pooled database connection back before a long wait on the network.

    Workers keep hundreds of provider calls in flight on threads; a thread holding a pooled
    connection through a call of seconds would make the pool size, not the thread count, the
    limit. A no-op without a pool (the next query reconnects anyway) and inside a transaction.
    """
    if not connection.in_atomic_block and connection.settings_dict.get("OPTIONS", {}).get("pool"):
        connection.close()
