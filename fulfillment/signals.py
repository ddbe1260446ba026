"""Signals the delivery engine sends to the layers above it (it never imports them)."""

from django.dispatch import Signal

# kwargs: delivery_id, attempt_id, serial. The provider reports delivered (a callback) the current
# purchase of a unit whose refund is decided or made: the money side decides what that means
# (withdraw a refund not sent yet, or flag "goods and money both given"). Sent inside the
# transaction that recorded the provider's answer.
unit_delivered_after_refund = Signal()
