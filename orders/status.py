"""What a customer sees of an order: the status JSON, the status page and the codes email share it.

Reads only. A unit's customer-facing status is derived from its Delivery in ONE place
(`unit_status`), and the refunded amount in ONE place (`order_refunded_kopecks`).
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils.http import urlencode

from fulfillment.models import Delivery
from orders.models import Order
from orders.services.refunds.books import order_refunded_kopecks as _refunded
from orders.state import FINAL_STATUSES, OrderStatus
from orders.unit_status import (  # noqa: F401 - the customer's words for units, re-exported with the rest
    UNIT_DELIVERED,
    UNIT_FAILED,
    UNIT_IN_PROGRESS,
    UNIT_REFUNDED,
    UNIT_REFUNDING,
    UNIT_STATUSES,
    UNIT_WAITING,
    unit_status,
)

# Order statuses after which nothing changes on its own: the status page stops refreshing.
FINAL_ORDER_STATUSES = (*FINAL_STATUSES, OrderStatus.CANCELLED)


def order_refunded_kopecks(order: Order) -> int:
    """Kopecks returned to the customer for `order`'s own purchase (refunds of a second, extra
    payment excluded); see orders.services.refunds."""
    return _refunded(order_id=order.pk)


def order_for_customer(*, public_id: str, token: str) -> Order | None:
    """The order `public_id` if `token` is its access token, else None (compared in constant time)."""
    order = None
    if public_id.isascii() and len(public_id) <= 36 and "\x00" not in public_id:
        order = Order.objects.filter(public_id=public_id).first()
    expected = order.access_token if order else "-" * 32
    # Compare even when there is no order, so the answer takes as long either way.
    matches = hmac.compare_digest(expected.encode(), (token or "").encode("utf-8", "replace"))
    return order if (order is not None and matches) else None


def order_status_path(order: Order, *, lang: str = "") -> str:
    query = {"token": order.access_token}
    if lang:
        query["lang"] = lang
    return f"{reverse('order-status-page', kwargs={'public_id': order.public_id})}?{urlencode(query)}"


def order_status_url(order: Order, *, lang: str = "") -> str:
    """The customer's status page, absolute (for the bank's SuccessURL and emails)."""
    return settings.PUBLIC_BASE_URL + order_status_path(order, lang=lang)


def order_status_data(order: Order) -> dict[str, Any]:
    """The customer's view of `order`: the body of GET /api/orders/<id>."""
    items = list(order.items.select_related("product").order_by("id"))
    units: dict[int, list[dict[str, Any]]] = {item.pk: [] for item in items}
    deliveries = Delivery.objects.filter(order=order).order_by("item_id", "unit_index")
    by_item: dict[int, dict[int, Delivery]] = {}
    for delivery in deliveries.only("item_id", "unit_index", "status", "serial"):
        by_item.setdefault(delivery.item_id, {})[delivery.unit_index] = delivery
    for item in items:
        for index in range(item.quantity):
            delivery = by_item.get(item.pk, {}).get(index)
            status = unit_status(delivery.status if delivery else None)
            code = delivery.serial if (delivery and status == UNIT_DELIVERED and delivery.serial) else None
            units[item.pk].append({"status": status, "code": code})
    return {
        "id": order.public_id,
        "status": order.status,
        "amount": order.amount_kopecks,
        "refunded_amount": order_refunded_kopecks(order),
        "email": order.customer_email,
        "created_at": order.created_at,
        "paid_at": order.paid_at,
        "items": [
            {
                "product": {"id": item.product_id, "name": item.product.name},
                "quantity": item.quantity,
                "recipient": item.recipient,
                "unit_price": item.unit_price_kopecks,
                "units": units[item.pk],
            }
            for item in items
        ],
    }
