"""Signals the delivery engine sends to the layers above it (it never imports them)."""

from django.dispatch import Signal

# kwargs: delivery_id, attempt_id, serial. The provider reports delivered (a callback) the current
# purchase of a unit whose refund is decided or made: the money side decides what that means
# (withdraw a refund not sent yet, or flag "goods and money both given"). Sent inside the
# transaction that recorded the provider's answer.
unit_delivered_after_refund = Signal()

# kwargs: report (fulfillment.catalog.SyncReport). Sent once a supplier price list has been applied
# to the products (committed): the money side reprices them by its rules.
price_list_applied = Signal()

# kwargs: order_id, all_delivered. Sent when an order's units leave nothing in progress: every unit
# delivered (all_delivered=True), or nothing open any more and some units not delivered. The money
# side closes the order (FULFILLED, or refunds for the rest) and returns the order's status.
# Sent inside the transaction that settled the last unit.
units_settled = Signal()
