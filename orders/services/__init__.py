"""Write operations on orders, one module per family: `lifecycle` (create, pay, cancel,
refund, fulfil), `notifications` (T-Bank payment notifications) and `review` (staff review of
notifications)."""

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
