"""The data of `make bench-scale` (bench/scale.py): a million orders, built inside PostgreSQL.

Every table is filled by one `INSERT ... SELECT` over `generate_series` (nothing crosses the
wire), and every row is a pure function of its number, so two runs load the same data. This
file is the one place that knows the shape of the data: one `TableLoad` per model, naming an
SQL expression for each column it cares about.

Columns added later by other engineers do not break the load: a field that is not listed
gets what the ORM would give it (its `default`, `now()` for auto_now fields, NULL when
nullable, the database default when it has one). Only a NOT NULL field without any default
needs a line here; `columns_plan` says which, and a unit test (tests/bench/) fails until it is
added. The SQL uses `mod()` rather than the `%` operator, because `%(name)s` are parameters.

Distributions (share of orders, by the order's number): fulfilled 91%, NEW 4.5% (abandoned
checkouts), cancelled 3.5%, PAID 0.5% (units failed, waiting for a retry, pending at the
provider or in flight), refunded 0.5%; 9% of orders carry two units. One order in the middle
(`hot_order`) is PAID with a unit that has `hot_attempts` provider calls. Each unit has 1-3
attempts (2 on average); each order has two payment notifications, with a sprinkling of
forbidden, malformed, unknown-order, amount-mismatch, duplicate and needs-review ones.
Customers' e-mails repeat (about 4 orders per address), recipients and PaymentIds are varied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db.models import NOT_PROVIDED, Field

# Order and unit statuses are the models' own values, so a renamed status breaks the load loudly.
from fulfillment.models import DeliveryStatus
from orders.models import NotificationVerdict
from orders.state import OrderStatus

_S = {f"o_{status.name.lower()}": status.value for status in OrderStatus}
_S |= {f"d_{status.name.lower()}": status.value for status in DeliveryStatus}
_S |= {f"v_{verdict.name.lower()}": verdict.value for verdict in NotificationVerdict}


def _sql(text: str) -> str:
    """Put the models' status values into an SQL text (`{o_paid}` -> `'paid'`)."""
    return text.format(**{key: f"'{value}'" for key, value in _S.items()})


# A deterministic draw in 0..9999 from a row's number and a salt: the same row gets the same
# draw in every table that needs it (an order's status decides its units and notifications).
FUNCTIONS = """
CREATE OR REPLACE FUNCTION pg_temp.bench_u(n bigint, salt int) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT mod(hashint8(n * 1000003 + salt)::bigint + 2147483648, 10000)::int $$;
CREATE OR REPLACE FUNCTION pg_temp.bench_price(product bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT (5 + mod(product, 20) * 5) * 10000 $$;
"""


@dataclass(frozen=True)
class Sizes:
    orders: int
    products: int = 20
    hot_attempts: int = 500

    @property
    def hot_order(self) -> int:
        """The order with hundreds of attempts: one in the middle, as an old stuck order would be."""
        return max(1, self.orders // 2)


@dataclass(frozen=True)
class TableLoad:
    label: str
    model: str
    # field name (or attname) -> SQL expression over the rows of `source`
    columns: dict[str, str]
    source: str
    # Ids given explicitly: the table's id sequence is moved past them afterwards.
    explicit_ids: bool = False
    # The rows made, for progress: an SQL count over the loaded table.
    where: str = ""


# --- the data --------------------------------------------------------------------------------

_ORDER_STATUS = _sql("""
CASE
  WHEN g = %(hot_order)s THEN {o_paid}
  WHEN pg_temp.bench_u(g, 1) < 9100 THEN {o_fulfilled}
  WHEN pg_temp.bench_u(g, 1) < 9550 THEN {o_new}
  WHEN pg_temp.bench_u(g, 1) < 9900 THEN {o_cancelled}
  WHEN pg_temp.bench_u(g, 1) < 9950 THEN {o_paid}
  ELSE {o_refunded}
END""")

PRODUCTS = TableLoad(
    label="products",
    model="orders.Product",
    source="generate_series(1, %(products)s) AS g",
    explicit_ids=True,
    columns={
        "id": "g",
        "name": "'Voucher ' || g",
        "sku": "'bench-sku-' || g",
        "price_kopecks": "pg_temp.bench_price(g)",
    },
)

# Orders' ids are their row numbers; created_at spreads them over the year before the load,
# oldest first, so ids and times grow together as they do in production.
ORDERS = TableLoad(
    label="orders",
    model="orders.Order",
    source=f"""(
      SELECT g, {_ORDER_STATUS} AS status,
             %(t0)s - make_interval(secs => 600 + (%(orders)s - g) * 31536000.0 / %(orders)s) AS created
      FROM generate_series(1, %(orders)s) AS g
    ) AS o""",
    explicit_ids=True,
    columns={
        "id": "g",
        # Unique per order, like the random ids the shop makes (a column default is one value).
        "public_id": "left(md5('order-' || g), 24)",
        "access_token": "md5('token-' || g)",
        "status": "status",
        "amount_kopecks": """pg_temp.bench_price(1 + mod(g, %(products)s))
            * (1 + (pg_temp.bench_u(g, 3) < 900 AND g <> %(hot_order)s)::int)""",
        "customer_email": """CASE WHEN pg_temp.bench_u(g, 4) < 300 THEN ''
            ELSE 'customer' || mod(pg_temp.bench_u(g, 5) * 10000 + pg_temp.bench_u(g, 6), 250000) || '@'
                 || (ARRAY['gmail.com', 'mail.ru', 'yandex.ru', 'example.org', 'outlook.com'])[1 + mod(g, 5)]
            END""",
        "payment_id": _sql("""CASE WHEN status = {o_new} AND pg_temp.bench_u(g, 8) < 5000 THEN ''
            ELSE (5000000000 + g * 13 + mod(pg_temp.bench_u(g, 8), 13))::text END"""),
        "created_at": "created",
        # The last change: what the status machine stamped last.
        "status_changed_at": _sql("""CASE status
            WHEN {o_new} THEN NULL
            WHEN {o_paid} THEN created + make_interval(secs => 30 + mod(pg_temp.bench_u(g, 9), 600))
            WHEN {o_fulfilled} THEN created + make_interval(secs => 40 + mod(pg_temp.bench_u(g, 9), 600))
            WHEN {o_cancelled} THEN created + interval '1 hour'
            ELSE created + interval '2 hours' END"""),
        "paid_at": _sql("""CASE WHEN status IN ({o_paid}, {o_fulfilled}, {o_refunded})
            THEN created + make_interval(secs => 30 + mod(pg_temp.bench_u(g, 9), 600)) END"""),
        "fulfilled_at": _sql("""CASE WHEN status = {o_fulfilled}
            THEN created + make_interval(secs => 40 + mod(pg_temp.bench_u(g, 9), 600)) END"""),
        "cancelled_at": _sql("CASE WHEN status = {o_cancelled} THEN created + interval '1 hour' END"),
        "refunded_at": _sql("CASE WHEN status = {o_refunded} THEN created + interval '2 hours' END"),
    },
)

# One item per order: its id is the order's; 9% of orders buy two units.
ITEMS = TableLoad(
    label="order items",
    model="orders.OrderItem",
    source="generate_series(1, %(orders)s) AS g",
    explicit_ids=True,
    columns={
        "id": "g",
        "order_id": "g",
        "product_id": "1 + mod(g, %(products)s)",
        "quantity": "1 + (pg_temp.bench_u(g, 3) < 900 AND g <> %(hot_order)s)::int",
        "unit_price_kopecks": "pg_temp.bench_price(1 + mod(g, %(products)s))",
        "recipient": """CASE WHEN pg_temp.bench_u(g, 10) < 2000
            THEN (100000000 + mod(g::bigint * 7919, 900000000)) || '(' || (1000 + pg_temp.bench_u(g, 11)) || ')'
            ELSE '08' || lpad(mod(g::bigint * 1046527 + pg_temp.bench_u(g, 11), 10000000000)::text, 10, '0') END""",
    },
)

# The units of every order that was paid. `u` draws the unit's fate within a PAID order.
_UNIT_STATUS = _sql("""
CASE
  WHEN o.status = {o_fulfilled} THEN {d_delivered}
  WHEN o.status = {o_refunded} THEN CASE WHEN u < 5000 THEN {d_failed} ELSE {d_cancelled} END
  WHEN o.id = %(hot_order)s THEN {d_pending}
  WHEN u < 4000 THEN {d_failed}
  WHEN u < 6500 THEN {d_waiting}
  WHEN u < 8500 THEN {d_pending}
  WHEN u < 9000 THEN {d_sending}
  WHEN k = 0 AND i.quantity > 1 THEN {d_delivered}
  ELSE {d_pending}
END""")

DELIVERIES = TableLoad(
    label="units (deliveries)",
    model="fulfillment.Delivery",
    source=_sql(f"""(
      SELECT o.id AS order_id, i.id AS item_id, k, o.paid_at, o.fulfilled_at, u, {_UNIT_STATUS} AS status
      FROM orders_order o
      JOIN orders_orderitem i ON i.order_id = o.id
      CROSS JOIN LATERAL generate_series(0, i.quantity - 1) AS k
      CROSS JOIN LATERAL (SELECT pg_temp.bench_u(i.id * 4 + k, 12) AS u) AS draw
      WHERE o.status IN ({{o_paid}}, {{o_fulfilled}}, {{o_refunded}})
      ORDER BY o.id, i.id, k
    ) AS d"""),
    columns={
        "order_id": "order_id",
        "item_id": "item_id",
        "unit_index": "k",
        "unit_key": "order_id || '-' || item_id || '-' || k",
        "reference": "substr(md5(item_id || '-' || k || '-ref'), 1, 24)",
        "purchase_no": _sql("CASE WHEN status = {d_failed} OR mod(u, 50) = 0 THEN 2 ELSE 1 END"),
        "provider": "CASE WHEN mod(u, 10) < 8 THEN 'digiflazz' ELSE 'mock' END",
        "status": "status",
        "purchase_attempts": _sql("CASE WHEN status = {d_failed} THEN 5 WHEN mod(u, 50) = 0 THEN 2 ELSE 1 END"),
        "status_checks": _sql("CASE WHEN status = {d_pending} THEN 1 + mod(u, 3) ELSE mod(u, 2) END"),
        "serial": _sql(
            "CASE WHEN status = {d_delivered} THEN upper(substr(md5(item_id || '-' || k), 1, 20)) ELSE '' END"
        ),
        "last_code": _sql("""CASE status WHEN {d_delivered} THEN '00' WHEN {d_pending} THEN '03'
            WHEN {d_failed} THEN (ARRAY['40', '44', '45', '49'])[1 + mod(u, 4)] ELSE '' END"""),
        "last_message": _sql("""CASE status WHEN {d_delivered} THEN 'Transaksi Sukses'
            WHEN {d_pending} THEN 'Transaksi Pending'
            WHEN {d_failed} THEN 'Nomor tujuan salah'
            WHEN {d_cancelled} THEN 'Order refunded before this unit was sent.' ELSE '' END"""),
        "failure_scope": _sql("""CASE WHEN status = {d_failed}
            THEN (ARRAY['permanent', 'retryable'])[1 + mod(u, 2)] ELSE '' END"""),
        # A few waiting units are due and nobody queued them lately: the sweep's real work.
        "next_attempt_at": _sql("""CASE
            WHEN status = {d_waiting} AND mod(u, 50) = 1 THEN %(t0)s - interval '1 minute'
            WHEN status = {d_waiting} THEN %(t0)s + make_interval(secs => 60 + u)
            WHEN status = {d_pending} THEN %(t0)s + make_interval(secs => 300 + u)
            WHEN status IN ({d_failed}, {d_cancelled}) THEN NULL
            ELSE paid_at END"""),
        "reference_sent_at": _sql("CASE WHEN status = {d_waiting} THEN NULL ELSE paid_at + interval '1 second' END"),
        "queued_at": _sql("""CASE WHEN status = {d_waiting} AND mod(u, 50) = 1 THEN %(t0)s - interval '1 day'
            ELSE paid_at END"""),
        "claim_token": _sql("CASE WHEN status = {d_sending} THEN md5(order_id || 'claim') ELSE '' END"),
        "claim_expires_at": _sql("CASE WHEN status = {d_sending} THEN %(t0)s + interval '5 minutes' END"),
        "delivered_at": _sql("""CASE WHEN status = {d_delivered}
            THEN coalesce(fulfilled_at, paid_at + interval '5 seconds') END"""),
        "created_at": "paid_at",
        "updated_at": "coalesce(fulfilled_at, paid_at)",
    },
)

# Attempts per unit: 1-3 (2 on average), the hot order's unit `hot_attempts`. The last one
# matches the unit's status; earlier ones are failed purchases or pending checks.
ATTEMPTS = TableLoad(
    label="attempts",
    model="fulfillment.DeliveryAttempt",
    source=_sql("""(
      SELECT d.id AS delivery_id, d.order_id, d.provider, d.reference, d.status, d.created_at AS began,
             a, n, pg_temp.bench_u(d.id * 512 + a, 20) AS u, (a = n) AS last
      FROM fulfillment_delivery d
      CROSS JOIN LATERAL (SELECT CASE WHEN d.order_id = %(hot_order)s THEN %(hot_attempts)s
                                      ELSE 1 + mod(pg_temp.bench_u(d.id, 19), 3) END AS n) AS how_many
      CROSS JOIN LATERAL generate_series(1, n) AS a
      WHERE d.status <> {d_cancelled}
      ORDER BY d.id, a
    ) AS t"""),
    columns={
        "delivery_id": "delivery_id",
        "order_id": "order_id",
        "provider": "coalesce(nullif(provider, ''), 'digiflazz')",
        "reference": _sql("""CASE WHEN status = {d_failed} AND NOT last
            THEN substr(md5(reference || '-' || a), 1, 24) ELSE reference END"""),
        "kind": _sql("""CASE WHEN a = 1 OR status = {d_failed} THEN 'purchase'
            WHEN mod(u, 10) < 7 THEN 'check' ELSE 'callback' END"""),
        "outcome": _sql("""CASE
            WHEN last AND status = {d_delivered} THEN 'delivered'
            WHEN last AND status = {d_failed} THEN 'failed'
            WHEN status = {d_failed} THEN 'failed'
            WHEN mod(u, 10) = 0 THEN 'failed'
            ELSE 'pending' END"""),
        "failure_scope": _sql("""CASE WHEN status = {d_failed} THEN CASE WHEN last THEN 'permanent' ELSE 'retryable' END
            WHEN NOT last AND mod(u, 10) = 0 THEN 'retryable' ELSE '' END"""),
        "code": _sql("""CASE WHEN last AND status = {d_delivered} THEN '00'
            WHEN status = {d_failed} OR mod(u, 10) = 0 THEN (ARRAY['40', '44', '45', '49'])[1 + mod(u, 4)]
            ELSE '03' END"""),
        "message": _sql("""CASE WHEN last AND status = {d_delivered} THEN 'Transaksi Sukses'
            WHEN status = {d_failed} OR mod(u, 10) = 0 THEN 'Gangguan pada supplier'
            ELSE 'Transaksi Pending' END"""),
        "serial": _sql("""CASE WHEN last AND status = {d_delivered}
            THEN upper(substr(md5(reference || 'sn'), 1, 20)) ELSE '' END"""),
        "raw": """jsonb_build_object('data', jsonb_build_object('ref_id', reference, 'rc',
            CASE WHEN last AND status = 'delivered' THEN '00' ELSE '03' END, 'buyer_last_saldo', 1000000 + u))""",
        "worker": "'worker-' || mod(u, 4) || ':' || (1000 + mod(u, 7)) || ':' || (139000000000000 + u)",
        "started_at": "began + make_interval(secs => (a - 1) * 45)",
        "finished_at": "began + make_interval(secs => (a - 1) * 45) + make_interval(secs => (200 + u) / 1000.0)",
        "duration_ms": "200 + u",
    },
)

# Two notifications per order (the n-th of order o is row o*2+n), by the order's status; a
# draw replaces some with what goes wrong in production.
_NOTE_KIND = _sql("""
CASE
  WHEN b < 10 THEN 'forbidden'
  WHEN b < 15 THEN 'malformed'
  WHEN b < 20 THEN 'unknown'
  WHEN b < 25 AND n = 2 AND o.status IN ({o_paid}, {o_fulfilled}) THEN 'review_capture'
  WHEN b < 35 AND n = 2 AND o.status = {o_fulfilled} THEN 'review_partial'
  WHEN b < 40 AND n = 1 AND o.status IN ({o_new}, {o_cancelled}) THEN 'mismatch'
  WHEN b < 60 AND n = 1 AND o.status IN ({o_paid}, {o_fulfilled}) THEN 'duplicate'
  WHEN o.status IN ({o_paid}, {o_fulfilled}) THEN CASE n WHEN 1 THEN 'authorized' ELSE 'confirmed' END
  WHEN o.status = {o_refunded} THEN CASE n WHEN 1 THEN 'confirmed' ELSE 'refunded' END
  WHEN o.status = {o_cancelled} THEN CASE n WHEN 1 THEN 'authorized' ELSE 'rejected' END
  ELSE 'authorized'
END""")

NOTIFICATIONS = TableLoad(
    label="notifications",
    model="orders.PaymentNotification",
    source=f"""(
      SELECT o.id, o.amount_kopecks AS amount, o.created_at, n, b, {_NOTE_KIND} AS kind,
             coalesce(nullif(o.payment_id, ''), (7000000000 + o.id)::text) AS pid
      FROM orders_order o
      CROSS JOIN generate_series(1, 2) AS n
      CROSS JOIN LATERAL (SELECT pg_temp.bench_u(o.id * 2 + n, 31) AS b) AS draw
      ORDER BY o.id, n
    ) AS x""",
    columns={
        "received_at": "created_at + make_interval(secs => 20 * n + CASE WHEN kind = 'refunded' THEN 7200 ELSE 0 END)",
        "order_id": "CASE WHEN kind IN ('forbidden', 'malformed', 'unknown') THEN NULL ELSE id END",
        "order_ref": """CASE kind WHEN 'malformed' THEN '' WHEN 'unknown' THEN (id + 100000000)::text
            ELSE id::text END""",
        "bank_status": """CASE kind WHEN 'malformed' THEN ''
            WHEN 'authorized' THEN 'AUTHORIZED' WHEN 'refunded' THEN 'REFUNDED' WHEN 'rejected' THEN 'REJECTED'
            WHEN 'review_partial' THEN 'PARTIAL_REFUNDED' ELSE 'CONFIRMED' END""",
        "payment_id": """CASE kind WHEN 'malformed' THEN ''
            WHEN 'review_capture' THEN (8000000000 + id)::text ELSE pid END""",
        "amount_kopecks": "CASE kind WHEN 'malformed' THEN NULL WHEN 'mismatch' THEN amount + 100 ELSE amount END",
        "verdict": _sql("""CASE kind
            WHEN 'forbidden' THEN {v_forbidden} WHEN 'malformed' THEN {v_malformed}
            WHEN 'unknown' THEN {v_unknown_order} WHEN 'mismatch' THEN {v_amount_mismatch}
            WHEN 'review_capture' THEN {v_needs_review} WHEN 'review_partial' THEN {v_needs_review}
            WHEN 'duplicate' THEN {v_duplicate} WHEN 'authorized' THEN {v_recorded}
            ELSE {v_applied} END"""),
        "http_status": """CASE kind WHEN 'forbidden' THEN 403 WHEN 'malformed' THEN 400 WHEN 'unknown' THEN 404
            WHEN 'mismatch' THEN 409 ELSE 200 END""",
        "detail": """CASE kind
            WHEN 'forbidden' THEN 'Token does not match.'
            WHEN 'malformed' THEN 'Body is not a JSON object.'
            WHEN 'unknown' THEN 'No order with OrderId ''' || (id + 100000000) || '''.'
            WHEN 'mismatch' THEN 'Amount does not match the order; the order was not marked paid.'
            WHEN 'review_capture' THEN 'Second captured payment: the customer may have paid twice.'
            WHEN 'review_partial' THEN 'PARTIAL_REFUNDED recorded; partial refunds need staff review.'
            WHEN 'duplicate' THEN 'Order is already paid.'
            WHEN 'authorized' THEN 'Payment authorized (hold); waiting for CONFIRMED.'
            ELSE 'Order changed.' END""",
        "raw_body": """CASE kind WHEN 'malformed' THEN 'not json'
            ELSE '{"TerminalKey":"ShopTerminal","OrderId":"' || id || '","Success":true,"Status":"'
                 || CASE kind WHEN 'authorized' THEN 'AUTHORIZED' WHEN 'refunded' THEN 'REFUNDED'
                              WHEN 'rejected' THEN 'REJECTED' ELSE 'CONFIRMED' END
                 || '","PaymentId":' || pid || ',"ErrorCode":"0","Amount":' || amount
                 || ',"CardId":' || (300000 + b) || ',"Pan":"430000******' || lpad(b::text, 4, '0')
                 || '","ExpDate":"1130","Token":"***"}' END""",
        "remote_addr": "('91.194.226.' || (1 + mod(b, 254)))::inet",
    },
)

TABLES: tuple[TableLoad, ...] = (PRODUCTS, ORDERS, ITEMS, DELIVERIES, ATTEMPTS, NOTIFICATIONS)

# NEW orders for the webhook's load (one unit at 100.00, as bench/fixtures.py makes them),
# inserted into either database; `count` and `product` are parameters.
WEBHOOK_ORDERS = TableLoad(
    label="NEW orders for the webhook",
    model="orders.Order",
    source="generate_series(1, %(count)s) AS g",
    columns={
        # Random, like the shop's own ids: every round adds orders to the same table.
        "public_id": "left(md5(random()::text || clock_timestamp()::text || g), 24)",
        "access_token": "md5(random()::text || g)",
        "status": _sql("{o_new}"),
        "amount_kopecks": "%(price)s",
        "customer_email": "'bench' || g || '@example.com'",
        "created_at": "now()",
    },
)
WEBHOOK_ITEMS = TableLoad(
    label="their items",
    model="orders.OrderItem",
    source="unnest(%(order_ids)s::bigint[]) AS g",
    columns={
        "order_id": "g",
        "product_id": "%(product)s",
        "quantity": "1",
        "unit_price_kopecks": "%(price)s",
        "recipient": "'081234567890'",
    },
)


# --- building the SQL --------------------------------------------------------------------------


class LoaderOutdated(Exception):
    """The models changed in a way the loader cannot follow on its own."""


@dataclass(frozen=True)
class Column:
    column: str
    # "sql": an expression of the TableLoad; "now": now(); "value": a parameter (the ORM default).
    kind: str
    value: Any = None
    model_field: Field | None = None


def columns_plan(load: TableLoad) -> list[Column]:
    """What each column of the table gets; raises LoaderOutdated for a field it cannot fill."""
    model = apps.get_model(load.model)
    listed: dict[str, str] = {}
    for name, expression in load.columns.items():
        try:
            listed[model._meta.get_field(name).column] = expression
        except FieldDoesNotExist as exc:
            raise LoaderOutdated(
                f"bench/scale_data.py ({load.label}): {load.model} has no field {name!r} any more; "
                "update the column list of this TableLoad."
            ) from exc
    plan = []
    for model_field in model._meta.concrete_fields:
        column = model_field.column
        if column in listed:
            plan.append(Column(column, "sql", listed[column], model_field))
        elif model_field.primary_key or getattr(model_field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
            continue  # the database fills it (identity, or the column's own default)
        elif getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False):
            plan.append(Column(column, "now", None, model_field))
        else:
            if model_field.unique:
                # A default is one value for every row: a unique column needs its own expression.
                raise LoaderOutdated(
                    f"bench/scale_data.py ({load.label}): {load.model}.{model_field.name} is unique; add an SQL "
                    "expression giving each row its own value to the columns of this TableLoad."
                )
            value = model_field.get_default()
            if value is None:
                if model_field.null:
                    continue
                raise LoaderOutdated(
                    f"bench/scale_data.py ({load.label}): {load.model}.{model_field.name} is NOT NULL without a "
                    "default; add an SQL expression for it to the columns of this TableLoad."
                )
            plan.append(Column(column, "value", value, model_field))
    return plan


def insert_sql(load: TableLoad, connection: Any) -> tuple[str, dict[str, Any]]:
    """The INSERT ... SELECT of a TableLoad, and the parameters of the defaults it fills.

    `connection` is Django's (for column types and the ORM's conversion of defaults)."""
    model = apps.get_model(load.model)
    names, expressions, params = [], [], {}
    for index, column in enumerate(columns_plan(load)):
        names.append(connection.ops.quote_name(column.column))
        if column.kind == "sql":
            expressions.append(column.value)
        elif column.kind == "now":
            expressions.append("now()")
        else:
            key = f"default_{index}"
            params[key] = column.model_field.get_db_prep_save(column.value, connection)
            expressions.append(f"%({key})s::{column.model_field.cast_db_type(connection)}")
    table = connection.ops.quote_name(model._meta.db_table)
    select = ",\n  ".join(expressions)
    return f"INSERT INTO {table} ({', '.join(names)})\nSELECT\n  {select}\nFROM {load.source}", params


def _sequence_reset(cursor: Any, table: str) -> None:
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 1) FROM {table}))"
    )


def load(
    pg: Any, *, sizes: Sizes, t0: datetime, connection: Any, progress: Callable[[str], None] = print
) -> dict[str, int]:
    """Fill the shop's tables of an empty, migrated database through `pg` (a psycopg connection
    in autocommit mode); returns the rows per table. Foreign keys are not checked row by row
    (session_replication_role) when the role may do so: the data is consistent by construction."""
    params: dict[str, Any] = {
        "orders": sizes.orders,
        "products": sizes.products,
        "hot_order": sizes.hot_order,
        "hot_attempts": sizes.hot_attempts,
        "t0": t0,
    }
    counts: dict[str, int] = {}
    with pg.cursor() as cursor:
        cursor.execute(FUNCTIONS)
        cursor.execute("SET work_mem = '64MB'")
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute("SET synchronous_commit = off")
        try:
            cursor.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:  # foreign keys are checked: slower, same data
            progress("  (foreign keys checked row by row: the database role may not skip them)")
        for table_load in TABLES:
            sql, defaults = insert_sql(table_load, connection)
            began = time.monotonic()
            with pg.transaction():
                cursor.execute(sql, {**params, **defaults})
                rows = cursor.rowcount
                table = apps.get_model(table_load.model)._meta.db_table
                if table_load.explicit_ids:
                    _sequence_reset(cursor, table)
            counts[table_load.label] = rows
            progress(f"  {table_load.label:<20} {rows:>10,} rows in {time.monotonic() - began:6.1f} s")
        cursor.execute("SET session_replication_role = DEFAULT")
    return counts


def orders_new_insert(pg: Any, *, count: int, product: int, price: int, connection: Any) -> list[int]:
    """`count` NEW orders of one unit at `price` kopecks each, in the database of `pg`; their ids."""
    with pg.cursor() as cursor, pg.transaction():
        sql, defaults = insert_sql(WEBHOOK_ORDERS, connection)
        cursor.execute(sql + "\nRETURNING id", {"count": count, "price": price, **defaults})
        order_ids = [row[0] for row in cursor.fetchall()]
        sql, defaults = insert_sql(WEBHOOK_ITEMS, connection)
        cursor.execute(sql, {"order_ids": order_ids, "product": product, "price": price, **defaults})
    return order_ids


def products_insert(pg: Any, *, count: int, connection: Any) -> None:
    """Just the products (for the empty database the webhook is compared on)."""
    with pg.cursor() as cursor, pg.transaction():
        cursor.execute(FUNCTIONS)
        sql, defaults = insert_sql(PRODUCTS, connection)
        cursor.execute(sql, {"products": count, **defaults})
        _sequence_reset(cursor, apps.get_model(PRODUCTS.model)._meta.db_table)
