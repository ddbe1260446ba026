"""Delivery services: the only code that moves a Delivery between statuses.

One module per family: `queueing` (units and task messages), `running` (claiming and the
delivery run), `results` (provider answers and callbacks), `retries` (staff and operator
retries), `halts` (provider halts and product pauses), `accounts` (the periodic account check
that lifts halts), `flags` (orders flagged for staff), `reconciliation`, `retention` (what
`purge_audit` may delete of the attempt log), `stopping` (held units stopped for a refund),
`refunding` (units moved into and out of a refund once the money side decided), `routing`
(which supplier SKU a unit goes through; repricing pauses after a sync); `common` holds
what they share. Reads for other packages are in `fulfillment.selectors`.

Money-safety rules, and where each is enforced:

* Only a PAID order's units are claimed (claim query joins the order's status).
* One worker at a time per unit: a claim is a row lock (SKIP LOCKED where the database has
  it) plus a claim token with an expiry; a claim left by a dead worker expires and the unit
  is re-checked with the same reference.
* A unit is marked SENDING by a conditional UPDATE from WAITING just before the provider
  call; a refund cancels WAITING units by the same kind of UPDATE. The row lock orders the
  two, so a refunded order never sends another unit.
* After an unknown outcome (PENDING, timeout, exception, crash) the unit is re-checked with
  the same reference; a new reference is issued only after a FAILED answer.
* Every provider call and every signed callback about a known reference leaves a
  DeliveryAttempt, whatever happens next.
* A fault that is not the unit's (product, shop) holds units back without using their purchase
  attempts; the WAITING -> SENDING gate also refuses while a halt or pause exists.
"""

from fulfillment.providers.base import UNKNOWN_OUTCOME_CODE
from fulfillment.services.accounts import AccountCheckReport, provider_account_check, provider_accounts_check
from fulfillment.services.common import (
    OrderNotFound,
    OrderNotFulfillable,
    UnitReport,
    new_reference,
)
from fulfillment.services.flags import order_flag_raise, order_flag_resolve, orders_needing_review
from fulfillment.services.funding import deposit_shortfalls
from fulfillment.services.halts import (
    deliveries_resume_after_faults,
    product_pause,
    product_resume,
    provider_halt,
    provider_resume,
)
from fulfillment.services.queueing import (
    deliveries_cancel_unsent,
    deliveries_create,
    order_fulfillment_publish,
    order_fulfillment_queue,
)
from fulfillment.services.reconciliation import paid_orders_reconcile
from fulfillment.services.refunding import (
    unit_delivered_despite_refund,
    unit_note_late_delivery,
    units_cover_by_full_refund,
    units_mark_refunded,
    units_note_refund,
    units_refund_unsent,
    units_release_from_refund,
    units_take_for_refund,
)
from fulfillment.services.results import delivery_check_soon, delivery_record_result, delivery_resolve_by_reference
from fulfillment.services.retries import RetryDecision, order_fulfillment_reset_for_retry, order_fulfillment_retry
from fulfillment.services.routing import (
    PauseSyncReport,
    PriceDecision,
    product_pauses_after_sync,
    units_buy_at_new_price,
)
from fulfillment.services.running import FulfillmentReport, fulfill_order
from fulfillment.services.stopping import units_stop_held

__all__ = [
    "AccountCheckReport",
    "PauseSyncReport",
    "PriceDecision",
    "FulfillmentReport",
    "OrderNotFound",
    "OrderNotFulfillable",
    "RetryDecision",
    "UNKNOWN_OUTCOME_CODE",
    "UnitReport",
    "deliveries_cancel_unsent",
    "deliveries_create",
    "deliveries_resume_after_faults",
    "delivery_check_soon",
    "delivery_record_result",
    "delivery_resolve_by_reference",
    "deposit_shortfalls",
    "fulfill_order",
    "new_reference",
    "order_flag_raise",
    "order_flag_resolve",
    "order_fulfillment_publish",
    "order_fulfillment_queue",
    "order_fulfillment_reset_for_retry",
    "order_fulfillment_retry",
    "orders_needing_review",
    "paid_orders_reconcile",
    "product_pause",
    "product_pauses_after_sync",
    "product_resume",
    "provider_account_check",
    "provider_accounts_check",
    "provider_halt",
    "provider_resume",
    "unit_delivered_despite_refund",
    "unit_note_late_delivery",
    "units_cover_by_full_refund",
    "units_mark_refunded",
    "units_note_refund",
    "units_refund_unsent",
    "units_release_from_refund",
    "units_stop_held",
    "units_take_for_refund",
    "units_buy_at_new_price",
]
