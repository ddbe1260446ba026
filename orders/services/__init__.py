"""Write operations on orders, one module per family: `lifecycle` (create, pay, cancel,
refund, fulfil), `notifications` (T-Bank payment notifications) and `retention` (what
`purge_audit` may delete of the notification log)."""

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

__all__ = [
    "ItemSpec",
    "NotificationOutcome",
    "PaymentConfigurationError",
    "allowed_networks",
    "order_cancel",
    "order_create",
    "order_mark_fulfilled",
    "order_mark_paid",
    "order_refund",
    "payment_notification_process",
]
