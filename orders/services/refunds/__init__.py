"""Refunds: deciding them, sending them to T-Bank (Cancel), recognising the bank's answers and
notifications, and closing the order once every unit is delivered or refunded.

One module per family: `decisions` (which units, undeliverable units, double payments),
`sending` (claim, Cancel, GetState, settlement, staff re-sends), `bank_notifications` (our
refunds coming back, portal refunds), `closing` (the order's final status), `books` (the
order's money), `reconciliation` (the sweep); `common` holds what they share.

Money-safety rules, and where each is enforced:

* A refund is decided in the transaction that moves its units FAILED -> REFUNDING, under the
  order's row lock, by a conditional UPDATE: a racing staff retry (FAILED -> WAITING) and a
  refund cannot both take a unit. Only FAILED units are refunded, so never a delivered one.
* Every Cancel of one refund carries the refund's own ExternalRequestId, so the bank refunds
  it once however often it is sent. After an unknown outcome (timeout, 5xx, a worker killed
  mid-call) the refund is CHECKING: GetState is asked before any repeat.
* A refund is settled (SUCCEEDED, Payment.refunded_kopecks increased, units REFUNDED) by one
  conditional transition, whichever comes first: our Cancel's answer, GetState, or the bank's
  notification. The others find it settled and change nothing.
* Lock order, everywhere: order row, then payment row, then refund row.
* Every bank call (and every notification that settles a refund) leaves a RefundAttempt.
"""

from orders.services.refunds.bank_notifications import RefundMatch, refund_notification_apply
from orders.services.refunds.books import (
    MoneyBalance,
    order_money_balance,
    order_refunded_kopecks,
    unit_customer_status,
)
from orders.services.refunds.closing import (
    order_settle,
)
from orders.services.refunds.common import (
    FULL_RETURN_STATUSES,
    PAID_STATUSES,
    PARTIAL_RETURN_STATUSES,
    RefundNotPossible,
)
from orders.services.refunds.decisions import (
    UndeliveredPreview,
    order_settle_undelivered,
    refund_decide_double_payment,
    refund_decide_undelivered,
    undelivered_units_preview,
)
from orders.services.refunds.late import (
    refund_unit_delivered_late,
)
from orders.services.refunds.ledger import (
    PaymentLedger,
    order_blocked,
    payment_ledger,
)
from orders.services.refunds.portal import (
    candidate_units_text,
    portal_full_refund_link_units,
    portal_partial_refund_bind,
    portal_refund_apply,
    portal_refund_record,
)
from orders.services.refunds.reconciliation import (
    refunds_reconcile,
)
from orders.services.refunds.sending import (
    refund_mark_succeeded,
    refund_order_public_id,
    refund_publish,
    refund_queue,
    refund_resend,
    refund_send,
    refund_send_next,
)

__all__ = [
    "FULL_RETURN_STATUSES",
    "MoneyBalance",
    "PAID_STATUSES",
    "PARTIAL_RETURN_STATUSES",
    "RefundMatch",
    "RefundNotPossible",
    "UndeliveredPreview",
    "candidate_units_text",
    "order_money_balance",
    "order_refunded_kopecks",
    "order_settle",
    "order_settle_undelivered",
    "portal_full_refund_link_units",
    "portal_partial_refund_bind",
    "portal_refund_apply",
    "PaymentLedger",
    "order_blocked",
    "payment_ledger",
    "portal_refund_record",
    "refund_decide_double_payment",
    "refund_decide_undelivered",
    "refund_mark_succeeded",
    "refund_notification_apply",
    "refund_order_public_id",
    "refund_publish",
    "refund_queue",
    "refund_resend",
    "refund_send",
    "refund_send_next",
    "refund_unit_delivered_late",
    "refunds_reconcile",
    "undelivered_units_preview",
    "unit_customer_status",
]
