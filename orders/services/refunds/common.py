"""What the refund services share: the statuses they read and the error they raise."""

from __future__ import annotations

import logging

from orders.state import OrderStatus

logger = logging.getLogger(__name__)


#: Order statuses in which the order's own payment was captured.
PAID_STATUSES = (OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED)
#: Bank statuses saying every kopeck of a payment went back.
FULL_RETURN_STATUSES = frozenset({"REFUNDED", "REVERSED"})
PARTIAL_RETURN_STATUSES = frozenset({"PARTIAL_REFUNDED", "PARTIAL_REVERSED"})
#: Bank statuses in which a refund may still be under way: wait, do not send again.
_BUSY_STATUSES = frozenset({"REFUNDING", "ASYNC_REFUNDING", "REVERSING"})
# Rounds of Cancel / GetState in one run; what is still unknown after them waits for the sweep.
_MAX_ROUNDS = 3


class RefundNotPossible(Exception):
    """A refund cannot be decided now; the message names the order and what to do."""
