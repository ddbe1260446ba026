"""The names of the order statuses and refund states, and the groups of them other code asks about.

Only names: the machines that move orders and refunds between them are `orders.state` and
`orders.refund_state`, which need the models; the models need these names for their columns.
Keeping the names apart is what lets both import in one direction.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class OrderStatus(models.TextChoices):
    NEW = "new", _("New")
    PAID = "paid", _("Paid")
    FULFILLED = "fulfilled", _("Fulfilled")
    CANCELLED = "cancelled", _("Cancelled")
    PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
    REFUNDED = "refunded", _("Refunded")


#: Where a paid order ends: every unit delivered (FULFILLED), delivered or refunded
#: (PARTIALLY_REFUNDED), or all the money returned (REFUNDED). In each, amount = delivered
#: value + refunded value (tests/orders/test_refund_invariant.py).
FINAL_STATUSES = (OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED)
#: Statuses after which the shop itself will not change the order again (audit retention).
SETTLED_STATUSES = (OrderStatus.FULFILLED, OrderStatus.REFUNDED, OrderStatus.CANCELLED)


class RefundState(models.TextChoices):
    DECIDED = "decided", _("Decided, not sent yet")
    SENDING = "sending", _("Sent to the bank, no answer yet")
    CHECKING = "checking", _("Outcome unknown: checking with GetState")
    SUCCEEDED = "succeeded", _("Refunded")
    FAILED = "failed", _("Refused by the bank (needs staff)")
    WITHDRAWN = "withdrawn", _("Withdrawn before sending (the unit was delivered after all)")


#: States in which the bank may have done (or be doing) the refund without our knowing yet.
IN_FLIGHT = (RefundState.SENDING, RefundState.CHECKING)
#: States that still need work from us.
OPEN = (RefundState.DECIDED, RefundState.SENDING, RefundState.CHECKING)
#: States that hold the payment's one in-flight place (with FAILED when `cancel_may_be_at_bank`).
HOLDS_PLACE = IN_FLIGHT
