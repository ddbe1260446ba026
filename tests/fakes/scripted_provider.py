"""A fulfillment provider whose every answer a test chooses, and which remembers the truth.

The money model (tests/orders/test_money_model.py) registers it as "scripted". Each new
reference takes the next outcome from `WORLD.script` (default: delivered):

* ``delivered`` — bought and delivered;
* ``failed`` — refused for good, nothing bought (a PERMANENT failure);
* ``failed_unknown`` — answered FAILED with the unknown-outcome code: the engine cannot tell
  whether it was bought, and the truth is decided later (`WORLD.resolve`);
* ``pending`` — no final answer yet (re-checked with the same reference until resolved);
* ``out_of_stock`` — refused for the product (its SKU pauses; the unit may go through a backup SKU);
* ``price_refused`` — refused for price (the SKU pauses for repricing).

`WORLD.delivered` is what the supplier really handed over: reference -> unit key. Idempotent per
reference, as the contract requires.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fulfillment.providers.base import (
    UNKNOWN_OUTCOME_CODE,
    FailureScope,
    FulfillmentParams,
    FulfillmentProvider,
    FulfillmentResult,
)


@dataclass
class World:
    script: list[str] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)  # reference -> delivered/failed/failed_unknown/pending
    units: dict[str, str] = field(default_factory=dict)  # reference -> unit key
    delivered: dict[str, str] = field(default_factory=dict)  # reference -> unit key (the supplier's truth)
    calls: int = 0

    def reset(self) -> None:
        self.script.clear()
        self.states.clear()
        self.units.clear()
        self.delivered.clear()
        self.calls = 0

    def resolve(self, reference: str, *, delivered: bool) -> None:
        """An open purchase (pending or unknown) ends: delivered or not."""
        if self.states.get(reference) in ("pending", "failed_unknown"):
            self.states[reference] = "delivered" if delivered else "failed"
            if delivered:
                self.delivered[reference] = self.units[reference]


WORLD = World()


class ScriptedProvider(FulfillmentProvider):
    name = "scripted"
    review_before_rebuy_codes = frozenset({UNKNOWN_OUTCOME_CODE})

    def fulfill(self, params: FulfillmentParams) -> FulfillmentResult:
        WORLD.calls += 1
        state = WORLD.states.get(params.reference)
        if state is None:
            state = WORLD.script.pop(0) if WORLD.script else "delivered"
            WORLD.states[params.reference] = state
            WORLD.units[params.reference] = params.unit_key
            if state == "delivered":
                WORLD.delivered[params.reference] = params.unit_key
        if state == "delivered":
            return FulfillmentResult.delivered(serial=f"S-{params.reference}", code="00", message="delivered")
        if state == "failed":
            return FulfillmentResult.failed(scope=FailureScope.PERMANENT, code="REFUSED", message="refused")
        if state == "out_of_stock":
            return FulfillmentResult.failed(scope=FailureScope.PRODUCT, code="68", message="out of stock")
        if state == "price_refused":
            return FulfillmentResult.failed(scope=FailureScope.PRICE, code="69", message="price above max_price")
        if state == "failed_unknown":
            return FulfillmentResult.failed(
                scope=FailureScope.PERMANENT, code=UNKNOWN_OUTCOME_CODE, message="outcome unknown"
            )
        return FulfillmentResult.pending(code="03", message="pending")
