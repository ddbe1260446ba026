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
5. **Say whom a failure concerns** (`failure_scope`), because the engine acts there:

   | scope | concerns | the engine |
   |---|---|---|
   | RETRYABLE | the unit | buys it again later (new reference, backoff, limited attempts) |
   | PERMANENT | the unit | marks it FAILED for staff |
   | PRODUCT | this SKU at this provider | pauses the product (ProductPause); its units wait |
   | PRICE | this SKU's price at this provider | pauses the product for repricing; its units wait |
   | SHOP | the shop's account: deposit, rate limit | halts the provider (ProviderHalt) |
   | CONFIGURATION | the shop's setup: credentials, IP | halts the provider, like SHOP |

   Waiting on a halt or a pause never uses a unit's purchase attempts, and a purchase refused
   for a product or shop fault does not count as one (nothing was bought, and it was not the
   unit's fault). A halt or pause is lifted when the fault is shown to be gone: by the periodic
   account check (`check_account()` + `fault_cleared()`), by a *probe* (after a growing wait one
   purchase is let through; any answer but the same fault lifts it), once a wait the provider
   asked for (`retry_after`) is over, or by staff in the admin.
6. **A status check reports the purchase, not the check.** `check_status()` answers FAILED only
   when the *purchase* failed for good. When the provider refused the status *request* itself
   (credentials, rate limit, malformed request), return `FulfillmentResult.refused(scope=...)`:
   the unit stays pending on its reference, and the scope still halts or pauses. (As a safety
   net the engine treats a CONFIGURATION failure answered to a check the same way.)

To add a provider: subclass FulfillmentProvider in its own module, implement `fulfill()`
(and `check_status()` if the supplier has a cheaper status call), list missing settings in
`configuration_errors()`, and register the dotted path under a name in
`settings.FULFILLMENT_PROVIDERS` (or `FULFILLMENT_EXTRA_PROVIDERS` in the environment). If the
supplier can tell the shop's account state without buying (a balance call), implement
`check_account()` and `fault_cleared()` so halts lift as soon as the fault is fixed; without them
halts lift by probes only.
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
    """For a FAILED (or refused) result: whom the failure concerns, so the engine acts there."""

    # The unit: worth trying again later with a new purchase (a timeout at the seller...).
    RETRYABLE = "retryable"
    # The unit: it will not succeed as it is (wrong number): needs a person.
    PERMANENT = "permanent"
    # The product at this provider (out of stock, no seller, seller disrupted): every unit of
    # this SKU would fail the same way, so its deliveries pause until it is shown to work again.
    PRODUCT = "product"
    # The product's price at this provider: the supplier asks more than the sale's max_price. Every
    # unit sold at that cost would be refused the same way, so its deliveries pause until the
    # next price-list sync reprices it (no probes: a new price, not time, ends it).
    PRICE = "price"
    # The whole shop's account at the provider (deposit used up, rate limit): every unit would
    # fail, so deliveries through the provider halt until the fault is shown to be gone.
    SHOP = "shop"
    # The shop's own setup (credentials, IP allow-list, account verification): a halt too, the
    # fix is the shop's.
    CONFIGURATION = "configuration"

    @property
    def concerns(self) -> str:
        """Whom the failure concerns: "unit", "product" or "shop"."""
        if self in SHOP_WIDE_SCOPES:
            return "shop"
        return "product" if self in PRODUCT_SCOPES else "unit"


#: Scopes that halt the whole provider.
SHOP_WIDE_SCOPES = frozenset({FailureScope.SHOP, FailureScope.CONFIGURATION})
#: Scopes that pause one SKU at one provider (ProductPause).
PRODUCT_SCOPES = frozenset({FailureScope.PRODUCT, FailureScope.PRICE})
#: Scopes that are not the unit's fault: the unit waits, its purchase attempts are not used.
NOT_THE_UNITS_SCOPES = SHOP_WIDE_SCOPES | PRODUCT_SCOPES


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
    balance: int | None = None  # the shop's deposit, when the answer tells it (measured against halts)
    price: int | None = None  # what the purchase cost at the provider (its currency), when the answer tells it

    @property
    def retryable(self) -> bool:
        """Whether a later attempt could succeed (pending outcomes are always re-checked)."""
        return self.outcome == Outcome.PENDING or self.failure_scope == FailureScope.RETRYABLE

    @classmethod
    def delivered(
        cls,
        *,
        serial: str = "",
        code: str = "",
        message: str = "",
        raw: dict | None = None,
        balance: int | None = None,
        price: int | None = None,
    ):
        return cls(
            Outcome.DELIVERED, code=code, message=message, serial=serial, raw=raw or {}, balance=balance, price=price
        )

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
        balance: int | None = None,
    ):
        return cls(
            Outcome.FAILED,
            code=code,
            message=message,
            failure_scope=scope,
            raw=raw or {},
            retry_after=retry_after,
            balance=balance,
        )

    @classmethod
    def refused(
        cls,
        *,
        scope: FailureScope,
        code: str = "",
        message: str = "",
        raw: dict | None = None,
        retry_after: float | None = None,
    ):
        """The provider turned the *request* away (a status check refused): the purchase's outcome
        is still unknown, so this is PENDING, and `scope` says what to halt or pause meanwhile."""
        return cls(
            Outcome.PENDING, code=code, message=message, failure_scope=scope, raw=raw or {}, retry_after=retry_after
        )


@dataclass(frozen=True)
class AccountStatus:
    """What a provider says about the shop's account, asked without buying anything."""

    ok: bool  # the account call was answered normally: credentials, address and account work
    balance: int | None = None  # the deposit, in the provider's currency, when it has one
    code: str = ""  # the provider's code when not ok
    message: str = ""  # for people: what the check found


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
    #: Codes of a shop fault that means "the deposit does not cover the purchase". A halt for one
    #: of them is lifted by the balance the account check (or a purchase's answer) reports, as far
    #: as it covers the units waiting: fulfillment.services.funding. Needs check_account().
    deposit_fault_codes: ClassVar[frozenset[str]] = frozenset()

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
        dedicated status call, or to turn refusals of the request into `refused()` (rule 6).
        """
        return self.fulfill(params)

    def check_account(self) -> AccountStatus | None:
        """Ask about the shop's account without buying (the periodic account check). None: the
        provider has no such call, and its halts lift by probes. Must not raise for a refusal."""
        return None

    @classmethod
    def fault_cleared(cls, *, code: str, account: AccountStatus, lowest_balance: int | None) -> bool:
        """Whether `account` (a fresh check_account() answer) shows that the shop-wide fault the
        provider answered with `code` is gone. `lowest_balance` is the lowest deposit seen since
        the halt began (None: not known yet): a higher one means a top-up. Default: it cannot
        tell, and probes decide."""
        return False


def release_database_connection() -> None:
    """Hand this thread's pooled database connection back before a long wait on the network.

    Workers keep hundreds of provider calls in flight on threads; a thread holding a pooled
    connection through a call of seconds would make the pool size, not the thread count, the
    limit. A no-op without a pool (the next query reconnects anyway) and inside a transaction.
    """
    if not connection.in_atomic_block and connection.settings_dict.get("OPTIONS", {}).get("pool"):
        connection.close()
