"""Fulfillment providers: the contract (base) and one module per provider protocol."""

from fulfillment.providers.base import (
    FailureScope,
    FulfillmentParams,
    FulfillmentProvider,
    FulfillmentResult,
    Outcome,
)

__all__ = ["FailureScope", "FulfillmentParams", "FulfillmentProvider", "FulfillmentResult", "Outcome"]
