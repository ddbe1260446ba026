"""Creating an order's delivery units and queueing background delivery runs for them."""

import functools
import logging

from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from fulfillment.models import (
    OPEN_STATUSES,
    Delivery,
    DeliveryStatus,
)
from fulfillment.services.common import (
    new_reference,
)
from fulfillment_site.dispatch import task_delay
from fulfillment_site.logs import order_log_extra
from orders.models import OrderItem

logger = logging.getLogger(__name__)


def deliveries_create(*, order_id: int) -> int:
    """Create the Delivery rows (one per unit) of an order being paid; returns how many units the
    order has. Idempotent: units that exist are kept as they are."""
    if connection.vendor == "postgresql":
        return _deliveries_create_in_one_statement(order_id=order_id)
    return _deliveries_create_through_the_orm(order_id=order_id)


def _deliveries_create_through_the_orm(*, order_id: int) -> int:
    now = timezone.now()
    items = OrderItem.objects.filter(order_id=order_id).values_list("id", "quantity")
    rows = [
        Delivery(
            order_id=order_id,
            item_id=item_id,
            unit_index=index,
            unit_key=f"{order_id}-{item_id}-{index}",
            reference=new_reference(),
            next_attempt_at=now,
            queued_at=now,
        )
        for item_id, quantity in items
        for index in range(quantity)
    ]
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


#: Columns deliveries_create sets from the item and the unit; every other column gets what the
#: ORM's bulk_create would give it (its default, now() for auto_now fields).
_UNIT_COLUMNS = ("id", "order", "item", "unit_index", "unit_key", "reference", "next_attempt_at", "queued_at")


def _deliveries_create_in_one_statement(*, order_id: int) -> int:
    """deliveries_create on PostgreSQL: the items read and the units inserted in one statement
    (the webhook pays an order in as few round trips as it can). The references are random like
    new_reference()'s: the first 24 hex digits of a version 4 UUID."""
    sql, defaults = _units_insert_statement()
    with connection.cursor() as cursor:
        cursor.execute(sql, {**defaults, "order": order_id, "now": timezone.now()})
        return cursor.fetchone()[0]


@functools.cache
def _units_insert_statement() -> tuple[str, dict[str, object]]:
    """The statement, built once per process from the models' meta, and its constant parameters."""
    quote = connection.ops.quote_name
    columns = ["order_id", "item_id", "unit_index", "unit_key", "reference", "next_attempt_at", "queued_at"]
    values = [
        "%(order)s",
        "item_id",
        "unit_index",
        "concat(%(order)s, '-', item_id, '-', unit_index)",
        "left(replace(gen_random_uuid()::text, '-', ''), 24)",
        "%(now)s",
        "%(now)s",
    ]
    defaults: dict[str, object] = {}
    for field in Delivery._meta.concrete_fields:
        if field.name in _UNIT_COLUMNS:
            continue
        columns.append(field.column)
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            values.append("%(now)s")
        else:
            key = f"default_{field.column}"
            defaults[key] = field.get_db_prep_save(field.get_default(), connection)
            values.append(f"%({key})s")
    items, units = quote(OrderItem._meta.db_table), quote(Delivery._meta.db_table)
    # Names from the models' meta, every value a parameter.
    sql = f"""
        WITH units AS (
            SELECT item.id AS item_id, unit.index AS unit_index
            FROM {items} AS item CROSS JOIN LATERAL generate_series(0, item.quantity - 1) AS unit(index)
            WHERE item.order_id = %(order)s
        ), created AS (
            INSERT INTO {units} ({", ".join(quote(column) for column in columns)})
            SELECT {", ".join(values)}
            FROM units ORDER BY item_id, unit_index
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM units
    """  # noqa: S608
    return sql, defaults


def order_fulfillment_queue(*, order_id: int) -> None:
    """Queue a background delivery run for the order once the current transaction commits."""
    Delivery.objects.filter(order_id=order_id, status__in=OPEN_STATUSES).update(queued_at=timezone.now())
    transaction.on_commit(lambda: order_fulfillment_publish(order_id=order_id))


def order_fulfillment_publish(*, order_id: int) -> None:
    """Send the delivery task now (call it on commit). A broker outage is logged, not raised:
    what had to be written is committed, and reconciliation queues the units once it is back."""
    try:
        task_delay("fulfillment.deliver_order", order_id)
    except BrokerUnavailable:
        logger.exception(
            "Could not queue the delivery of order %s; reconciliation will queue it",
            order_id,
            extra=order_log_extra(order_id),
        )
        # Not queued after all: the next sweep must not wait for the stale window.
        Delivery.objects.filter(order_id=order_id, status__in=OPEN_STATUSES).update(queued_at=None)


def deliveries_cancel_unsent(*, order_id: int) -> int:
    """Refund: units not yet sent are never sent. Units already sent resolve as they will."""
    return Delivery.objects.filter(order_id=order_id, status=DeliveryStatus.WAITING).update(
        status=DeliveryStatus.CANCELLED,
        last_message="Order refunded before this unit was sent.",
        claim_token="",
        claim_expires_at=None,
    )
