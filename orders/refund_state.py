"""The refund state machine: the one place that defines the legal moves between refund states and
makes them (the state names are in `orders.statuses`).

    DECIDED --claim--> SENDING --bank answered Success--> SUCCEEDED
                          |  \\--bank refused (Success=false)--> FAILED --staff "send again"--> DECIDED
                          |                                         (or CHECKING if an earlier Cancel's
                          |                                          outcome was unknown)
                          |
                          +--no readable answer / worker died--> CHECKING --GetState: refunded--> SUCCEEDED
                                                                   |   \\--GetState: not refunded--> SENDING
                                                                   +--GetState refused--> FAILED

    FAILED, an earlier Cancel maybe made --sweep: GetState shows it made--> SUCCEEDED
    DECIDED --a unit of it was delivered after all (late provider success)--> WITHDRAWN
    DECIDED --the whole payment was refunded in the bank's portal--> WITHDRAWN

At most one refund of a payment is SENDING or CHECKING (or FAILED with a Cancel that may have
reached the bank) at a time: a unique constraint on the payment. The others stay DECIDED and
are sent when it settles. A PORTAL refund (made in the bank's portal) is born SUCCEEDED. A notification from the bank
that our refund went through may settle it from SENDING or CHECKING, before our own call
returns. Every move is a conditional UPDATE (`WHERE id = %s AND state IN (<sources>)`), so two
processes racing on one refund cannot both win; moving to the state a refund already has is
a no-op reporting `changed=False`.
"""

from __future__ import annotations

from django.utils import timezone

from orders.models import Refund
from orders.statuses import HOLDS_PLACE, IN_FLIGHT, OPEN, RefundState

# The state names live in orders.statuses (the Refund model needs them); re-exported here.
__all__ = [
    "HOLDS_PLACE",
    "IN_FLIGHT",
    "OPEN",
    "REFUND_TRANSITIONS",
    "IllegalRefundTransition",
    "RefundState",
    "refund_transition",
]


# target -> states it may be entered from.
REFUND_TRANSITIONS: dict[str, frozenset[str]] = {
    RefundState.DECIDED: frozenset({RefundState.FAILED}),
    RefundState.SENDING: frozenset({RefundState.DECIDED, RefundState.CHECKING}),
    RefundState.CHECKING: frozenset({RefundState.SENDING, RefundState.FAILED}),
    # From FAILED only while a Cancel of it may have reached the bank (the bank then shows it made).
    RefundState.SUCCEEDED: frozenset({RefundState.SENDING, RefundState.CHECKING, RefundState.FAILED}),
    RefundState.FAILED: frozenset({RefundState.SENDING, RefundState.CHECKING}),
    RefundState.WITHDRAWN: frozenset({RefundState.DECIDED}),
}


class IllegalRefundTransition(Exception):
    def __init__(self, *, refund_id: int, current: str, target: str) -> None:
        self.refund_id, self.current, self.target = refund_id, current, target
        allowed = ", ".join(sorted(REFUND_TRANSITIONS.get(target, ())))
        super().__init__(f"Refund {refund_id} is {current}; it cannot become {target} (only from {allowed}).")


def refund_transition(
    *,
    refund_id: int,
    target: str,
    sources: tuple[str, ...] | None = None,
    claim: str | None = None,
    where=None,
    **fields,
) -> bool:
    """Move refund `refund_id` to `target` with `fields`, if it is in one of `sources` (default:
    every legal source) and, with `claim`, still held by that claim token. Returns whether this
    call moved it; False when it already was `target` or another process moved it first.
    Raises for a source that can never lead there."""
    legal = REFUND_TRANSITIONS.get(target, frozenset())
    sources = tuple(sources) if sources is not None else tuple(legal)
    illegal = set(sources) - legal
    if illegal:
        raise IllegalRefundTransition(refund_id=refund_id, current=sorted(illegal)[0], target=target)
    values = {"state": target, **fields}
    if target == RefundState.SUCCEEDED:
        values.setdefault("settled_at", timezone.now())
    # QuerySet.update bypasses Refund.save(), which never writes the state column.
    rows = Refund.objects.filter(pk=refund_id, state__in=sources)
    if claim is not None:
        rows = rows.filter(claim_token=claim)
    if where is not None:
        rows = rows.filter(where)
    return bool(rows.update(**values))
