"""Data for the benchmarks, made and checked through the ORM of the benchmark database.

Imported by bench/run.py after Django is set up with the benchmark settings. NEW orders for
the webhook are bulk-inserted (order_create is one transaction per order, too slow for tens
of thousands); paid orders for the delivery run go through orders.state like any other.
"""

from __future__ import annotations

import json
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max

from fulfillment.models import Delivery, MockLedgerEntry
from fulfillment.services import deliveries_create
from orders.models import Order, OrderItem, PaymentNotification, Product
from orders.state import OrderStatus, order_transition
from orders.tbank import sign_notification

PRICE_KOPECKS = 10000
_TABLES = (
    "fulfillment_deliveryattempt",
    "fulfillment_delivery",
    "fulfillment_mockledgerentry",
    "fulfillment_providerhalt",
    "orders_paymentnotification",
    "orders_orderitem",
    "orders_order",
)


def tables_reset() -> None:
    """Empty the benchmark database's shop tables (the schema stays)."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE")


def product_ensure() -> Product:
    product, _ = Product.objects.get_or_create(
        sku="bench-unit", defaults={"name": "Benchmark unit", "price_kopecks": PRICE_KOPECKS}
    )
    return product


def orders_create_new(*, count: int, product: Product, batch: int = 2000) -> list[int]:
    """`count` NEW orders of one unit each; returns their ids."""
    ids: list[int] = []
    sold = OrderItem.sold_as(product)
    for offset in range(0, count, batch):
        size = min(batch, count - offset)
        with transaction.atomic():
            orders = Order.objects.bulk_create(Order(amount_kopecks=PRICE_KOPECKS) for _ in range(size))
            OrderItem.objects.bulk_create(
                OrderItem(order=order, product=product, quantity=1, recipient="081234567890", **sold)
                for order in orders
            )
        ids.extend(order.pk for order in orders)
    return ids


def orders_create_paid(*, count: int, product: Product) -> list[int]:
    """`count` PAID orders with their units, nothing queued yet (the benchmark queues them)."""
    ids = orders_create_new(count=count, product=product)
    for order_id in ids:
        with transaction.atomic():
            order_transition(order_id=order_id, target=OrderStatus.PAID, current=OrderStatus.NEW, payment_id="bench")
            deliveries_create(order_id=order_id)
    return ids


def confirmed_bodies(order_ids: list[int], *, public_ids: dict[int, str] | None = None) -> list[str]:
    """Signed CONFIRMED notifications, one per order, as the bank would send them. `public_ids`
    (order id -> OrderId) when the orders are in another database than Django's own."""
    bodies = []
    if public_ids is None:
        public_ids = dict(Order.objects.filter(pk__in=order_ids).values_list("pk", "public_id"))
    missing = [order_id for order_id in order_ids if order_id not in public_ids]
    if missing:
        raise ValueError(
            f"{len(missing)} order id(s) have no public id, e.g. {missing[:5]}: create the orders first, or pass "
            "public_ids (floor_bodies() makes bodies that name no order)."
        )
    for order_id in order_ids:
        payload = {
            "TerminalKey": settings.TBANK_TERMINAL_KEY,
            "OrderId": public_ids[order_id],
            "Success": True,
            "Status": "CONFIRMED",
            "PaymentId": 900000000 + order_id,
            "ErrorCode": "0",
            "Amount": PRICE_KOPECKS,
            "CardId": 322264,
            "Pan": "430000******0777",
            "ExpDate": "1130",
        }
        bodies.append(json.dumps(sign_notification(payload, settings.TBANK_PASSWORD), separators=(",", ":")))
    return bodies


def floor_bodies(count: int) -> list[str]:
    """Bodies for the floor endpoint: shaped and signed like the webhook's, naming no order (the
    floor inserts a row and looks nothing up). OrderIds are public ids, not primary keys."""
    numbers = list(range(1, count + 1))
    return confirmed_bodies(numbers, public_ids={number: f"floor-{number:06d}" for number in numbers})


def notification_verdicts(order_ids: list[int]) -> dict[str, int]:
    """How the webhook judged the notifications of these orders (verdict -> count)."""
    rows = (
        PaymentNotification.objects.filter(order_id__in=order_ids)
        .values_list("verdict")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def orders_fulfilled(order_ids: list[int]) -> tuple[int, datetime | None]:
    """How many of these orders are FULFILLED, and when the last one became so."""
    result = Order.objects.filter(pk__in=order_ids, status=OrderStatus.FULFILLED).aggregate(
        n=Count("id"), last=Max("fulfilled_at")
    )
    return result["n"], result["last"]


def ledger_check(order_ids: list[int]) -> dict[str, int]:
    """Count real deliveries per unit in the Mock provider's ledger."""
    unit_keys = set(Delivery.objects.filter(order_id__in=order_ids).values_list("unit_key", flat=True))
    per_unit = dict(
        MockLedgerEntry.objects.filter(outcome="delivered", unit_key__in=unit_keys)
        .values_list("unit_key")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {
        "units": len(unit_keys),
        "delivered_once": sum(1 for key in unit_keys if per_unit.get(key) == 1),
        "delivered_twice_or_more": sum(1 for n in per_unit.values() if n > 1),
        "not_delivered": sum(1 for key in unit_keys if key not in per_unit),
        "ledger_deliveries": sum(per_unit.values()),
    }
