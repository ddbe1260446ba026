"""Signals the order services send inside the transaction that changes an order."""

from django.dispatch import Signal

# kwargs: order_id. Sent when an order becomes PAID.
order_paid = Signal()
# kwargs: order_id. Sent when an order becomes REFUNDED.
order_refunded = Signal()
# kwargs: order_id. Sent when an order's deliveries end with codes for the customer: it becomes
# FULFILLED (every unit delivered) or PARTIALLY_REFUNDED (the rest refunded).
order_fulfilled = Signal()
# kwargs: refund_id, order_id. Sent once the transaction that settled a refund (the bank
# returned the money) has committed: the hook for the customer's email (orders.refund_emails).
refund_settled = Signal()
