"""Write operations on orders, one module per family: `lifecycle` (create, pay, cancel, refund,
fulfil), `checkout` (the customer's order and its T-Bank Init), `notifications` (T-Bank
payment notifications and the one path applying a bank status), `polling` (GetState for
payments that never notified), `refunds` (refund decisions, Cancel, settlement), `emails`
(the customer email outbox), `review` (staff review of notifications) and `retention` (what
`purge_audit` may delete)."""

from orders.services.lifecycle import (
    ItemSpec,
    order_cancel,
    order_create,
    order_mark_fulfilled,
    order_mark_paid,
    order_refund,
)
from orders.services.notifications import (
    NotificationOutcome,
    PaymentConfigurationError,
    allowed_networks,
    payment_notification_process,
)
from orders.services.review import NotificationNotReviewable, payment_notification_mark_reviewed

__all__ = [
    "ItemSpec",
    "NotificationNotReviewable",
    "NotificationOutcome",
    "PaymentConfigurationError",
    "allowed_networks",
    "order_cancel",
    "order_create",
    "order_mark_fulfilled",
    "order_mark_paid",
    "order_refund",
    "payment_notification_mark_reviewed",
    "payment_notification_process",
]
