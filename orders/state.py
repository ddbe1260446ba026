"""The order status machine: the one place that defines the legal moves between order statuses and
makes them (the status names are in `orders.statuses`).

Every status change is a conditional UPDATE (`... WHERE id = %s AND status IN (<legal
sources>)`, or `... WHERE <lookup> AND status = %s RETURNING` on a hot path), so two
processes racing on the same order cannot both win: the database decides, whichever backend
it is. A transition to the status the order already has is a no-op that reports
`changed=False`, which is what makes duplicate notifications and retries harmless. Anything
else that is not in TRANSITIONS raises IllegalTransition.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from orders.models import Order
from orders.statuses import FINAL_STATUSES, OrderStatus

# The status names live in orders.statuses (the Order model needs them); they are re-exported here,
# where callers meet them together with the machine.
__all__ = [
    "FINAL_STATUSES",
    "TRANSITIONS",
    "IllegalTransition",
    "OrderStatus",
    "TransitionResult",
    "can_transition",
    "order_transition",
    "order_transition_returning",
]


# target -> statuses it may be entered from.
# CANCELLED -> PAID: the bank is the source of truth for money. A payment captured after the
# order was cancelled (a late CONFIRMED after DEADLINE_EXPIRED, say) must not be lost: the
# order becomes PAID and is delivered, or staff refund it.
# FULFILLED -> REFUNDED: a refund after delivery is still a refund; the books must show it.
# PAID -> PARTIALLY_REFUNDED: every unit settled, some delivered, the others refunded by a
# refund that succeeded. PARTIALLY_REFUNDED -> REFUNDED: the rest was refunded in the portal.
TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PAID: frozenset({OrderStatus.NEW, OrderStatus.CANCELLED}),
    OrderStatus.FULFILLED: frozenset({OrderStatus.PAID}),
    OrderStatus.CANCELLED: frozenset({OrderStatus.NEW}),
    OrderStatus.PARTIALLY_REFUNDED: frozenset({OrderStatus.PAID}),
    OrderStatus.REFUNDED: frozenset({OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED}),
}

# The timestamp each target status stamps.
_STAMPS = {
    OrderStatus.PAID: "paid_at",
    OrderStatus.FULFILLED: "fulfilled_at",
    OrderStatus.CANCELLED: "cancelled_at",
    OrderStatus.PARTIALLY_REFUNDED: "refunded_at",
    OrderStatus.REFUNDED: "refunded_at",
}


class IllegalTransition(Exception):
    """An order cannot move from its current status to the requested one."""

    def __init__(self, *, order_id: int, current: str, target: str) -> None:
        self.order_id = order_id
        self.current = current
        self.target = target
        allowed = ", ".join(sorted(TRANSITIONS.get(target, ())))
        who = f"only an order that is {allowed} can" if allowed else "no order can"
        super().__init__(f"Order {order_id} is {current}; it cannot become {target} ({who}).")


def can_transition(current: str, target: str) -> bool:
    return current in TRANSITIONS.get(target, frozenset())


@dataclass(frozen=True)
class TransitionResult:
    changed: bool
    previous: str
    current: str


def order_transition(*, order_id: int, target: str, current: str | None = None, **fields) -> TransitionResult:
    """Move order `order_id` to `target`, atomically with `fields`.

    `current` is the status the caller believes the order has (it saves a read when the
    caller holds the row lock); a stale guess costs one more round, never a wrong write.

    Returns changed=False when the order already is `target` (idempotent repeat). Raises
    IllegalTransition when the current status cannot lead to `target`, and
    Order.DoesNotExist when there is no such order.
    """
    if target not in OrderStatus.values:
        raise ValueError(f"{target!r} is not an order status; use one of {', '.join(OrderStatus.values)}.")
    # A status no transition leads to (NEW) has no sources: moving there is illegal, not unknown.
    sources = TRANSITIONS.get(target, frozenset())
    now = timezone.now()
    values = {"status": target, "status_changed_at": now, **fields}
    stamp = _STAMPS.get(target)
    if stamp:
        values[stamp] = now
    # The status column is only ever written here; the QuerySet.update bypasses Order.save()'s
    # guard on purpose.
    for _attempt in range(2):
        if current is None:
            current = Order.objects.filter(pk=order_id).values_list("status", flat=True).first()
        if current is None:
            raise Order.DoesNotExist(f"Order {order_id} does not exist.")
        if current == target:
            return TransitionResult(changed=False, previous=current, current=current)
        if current not in sources:
            raise IllegalTransition(order_id=order_id, current=current, target=target)
        if Order.objects.filter(pk=order_id, status=current).update(**values):
            return TransitionResult(changed=True, previous=current, current=target)
        # Someone else moved the order between our read and our write: look again.
        current = None
    current = Order.objects.filter(pk=order_id).values_list("status", flat=True).get()
    if current == target:
        return TransitionResult(changed=False, previous=current, current=current)
    raise IllegalTransition(order_id=order_id, current=current, target=target)


def order_transition_returning(*, lookup: dict[str, object], target: str, current: str, **fields):
    """Move the order matching `lookup` from `current` to `target`, atomically with `fields`, and
    return it as it now is; None, changing nothing, when no order matches `lookup` with status
    `current`.

    One statement, `UPDATE ... WHERE <lookup> AND status = <current> RETURNING <row>`: the row
    lock, the check and the change in one round trip, where order_transition needs the caller's
    `SELECT ... FOR UPDATE` first. Two racing callers are ordered by the row lock: the second
    re-checks the status once the first commits, matches nothing and gets None. For the common
    case of a hot path (a NEW order paid); anything else takes the locked read and
    order_transition.
    """
    if not can_transition(current, target):
        raise ValueError(f"An order that is {current} cannot become {target}; see TRANSITIONS.")
    now = timezone.now()
    values = {"status": target, "status_changed_at": now, **fields}
    stamp = _STAMPS.get(target)
    if stamp:
        values[stamp] = now
    meta, quote = Order._meta, connection.ops.quote_name
    assignments, conditions, params = [], [], []
    for name, value in values.items():
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    for name, value in {**lookup, "status": current}.items():
        field = meta.get_field(name)
        conditions.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_value(value, connection))
    columns = meta.concrete_fields
    # Names from the model's meta, every value a parameter.
    returning = ", ".join(quote(field.column) for field in columns)
    sql = f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} WHERE {' AND '.join(conditions)} "  # noqa: S608
    sql += f"RETURNING {returning}"
    # The status column is only ever written here and in order_transition.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    converted = []
    for field, value in zip(columns, row, strict=True):
        column = field.get_col(meta.db_table)
        for converter in connection.ops.get_db_converters(column) + field.get_db_converters(connection):
            value = converter(value, column, connection)
        converted.append(value)
    return Order.from_db(connection.alias, [field.attname for field in columns], converted)
