"""Stopping units that a halt or a pause holds back, so staff can refund them instead of waiting.

A held unit is WAITING: its last purchase (if any) ended in a final answer, and the WAITING ->
SENDING gate refuses to send it while the halt or pause lasts. Stopping it is one conditional
UPDATE from WAITING, the same kind the claim makes: a worker that claimed the unit first has
moved it to SENDING (its row lock orders the two), so a unit being bought is never stopped and
a stopped unit is never bought. A stopped unit is FAILED with the code STOPPED_CODE: the engine
never sends it again by itself, and the refund decision takes it like any failed unit. Call it
inside the transaction that decides the refund, so a refund that cannot be decided leaves the
units waiting as they were.
"""

from __future__ import annotations

from django.db import transaction

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.providers.base import FailureScope
from fulfillment.selectors import STOPPED_CODE, held_units


def units_stop_held(*, order_id: int, stopped_by: str) -> list[int]:
    """Stop the held WAITING units of an order (see the module): the ids of the units stopped.
    Must run inside a transaction (the refund decision's)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("units_stop_held must run inside the transaction that decides their refund.")
    unit_ids = list(held_units(order_id=order_id).values_list("pk", flat=True))
    if not unit_ids:
        return []
    stopped = list(
        Delivery.objects.select_for_update(no_key=True)
        .filter(pk__in=unit_ids, status=DeliveryStatus.WAITING)
        .values_list("pk", flat=True)
    )
    Delivery.objects.filter(pk__in=stopped, status=DeliveryStatus.WAITING).update(
        status=DeliveryStatus.FAILED,
        failure_scope=FailureScope.PERMANENT,
        last_code=STOPPED_CODE,
        last_message=f"Stopped by {stopped_by} while held by a halt or pause, to be refunded."[:500],
        claim_token="",
        claim_expires_at=None,
        next_attempt_at=None,
    )
    return stopped
