"""What the order page shows: what is wrong first, the facts, one table of units, the timeline.

A fixed number of queries whatever the size of the order (query budget in
tests/orders/test_query_budgets.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count
from django.utils import timezone

from fulfillment_site.console.banner import active_halts
from fulfillment_site.console.formatting import duration, rubles
from fulfillment_site.console.problems import paid_too_long_cutoff
from fulfillment_site.console.timeline import order_timeline


@dataclass(frozen=True)
class UnitRow:
    product: str
    recipient: str
    status: str
    status_label: str
    tone: str
    code: str
    attempts: int
    reference: str
    message: str
    unit_key: str
    delivery_id: int | None


UNIT_TONES = {"delivered": "ok", "failed": "bad", "cancelled": "muted", "pending": "info", "sending": "info"}


def order_status_badge(order, *, units_failed: int = 0, now=None) -> tuple[str, str]:
    """(label, tone) that says where an order really is: "Paid — 1 unit failed", not "Paid"."""
    status = order.status
    if status == "paid":
        if units_failed:
            return f"Paid — {units_failed} unit{'s' if units_failed != 1 else ''} failed", "bad"
        if order.paid_at and order.paid_at < paid_too_long_cutoff():
            since = duration(((now or timezone.now()) - order.paid_at).total_seconds())
            return f"Paid — delivering for {since}", "warn"
        return "Paid — delivering", "info"
    return {
        "new": ("New — not paid", "muted"),
        "fulfilled": ("Fulfilled", "ok"),
        "cancelled": ("Cancelled", "muted"),
        "refunded": ("Refunded", "warn"),
    }.get(status, (order.get_status_display(), "muted"))


def order_units(order) -> list[UnitRow]:
    """Every unit of the order with its product, recipient, status, code and attempts; before
    payment (no units yet) one row per unit the items will make."""
    from fulfillment.models import Delivery, DeliveryStatus

    labels = dict(DeliveryStatus.choices)
    deliveries = list(
        Delivery.objects.filter(order=order)
        .select_related("item__product")
        .annotate(attempt_count=Count("attempts"))
        .order_by("item_id", "unit_index")
    )
    if deliveries:
        return [
            UnitRow(
                product=unit.item.product.name,
                recipient=unit.item.recipient,
                status=unit.status,
                status_label=labels.get(unit.status, unit.status),
                tone=UNIT_TONES.get(unit.status, ""),
                code=unit.serial,
                attempts=unit.attempt_count,
                reference=unit.reference,
                message=unit.last_message if unit.status != DeliveryStatus.DELIVERED else "",
                unit_key=unit.unit_key,
                delivery_id=unit.pk,
            )
            for unit in deliveries
        ]
    rows = []
    for item in order.items.select_related("product"):
        for _ in range(item.quantity):
            rows.append(
                UnitRow(
                    product=item.product.name,
                    recipient=item.recipient,
                    status="",
                    status_label="Not created (order not paid)",
                    tone="muted",
                    code="",
                    attempts=0,
                    reference="",
                    message="",
                    unit_key="",
                    delivery_id=None,
                )
            )
    return rows


def order_wrongs(order, units: list[UnitRow]) -> list[str]:
    """What is wrong with this order, in words staff can act on; empty when nothing is."""
    from orders.models import NotificationVerdict

    wrongs = []
    if order.status == "paid":
        failed = [unit for unit in units if unit.status == "failed"]
        for unit in failed:
            wrongs.append(
                f"Unit {unit.unit_key} ({unit.product} for {unit.recipient}) failed: "
                f"{unit.message or 'no message from the provider'}"
            )
        if failed:
            wrongs.append("Fix the cause, then press Retry: failed units are bought again under a new reference.")
        if order.paid_at and order.paid_at < paid_too_long_cutoff():
            since = duration((timezone.now() - order.paid_at).total_seconds())
            wrongs.append(f"Paid {since} ago and still not fulfilled.")
        halted = {halt["provider"]: halt for halt in active_halts()}
        open_units = [unit for unit in units if unit.status in ("waiting", "sending", "pending")]
        for provider, halt in halted.items():
            if open_units:
                wrongs.append(f"Deliveries through {provider} are halted: {halt['reason']}")
    to_review = order.notifications.filter(verdict=NotificationVerdict.NEEDS_REVIEW, reviewed_at__isnull=True)
    for record in to_review.order_by("id"):
        wrongs.append(f"Payment notification {record.pk} needs review: {record.detail}")
    for flag in order.flags.filter(resolved_at__isnull=True).order_by("id"):
        wrongs.append(f"Flagged ({flag.get_kind_display()}): {flag.reason}")
    for refund in order.refunds.filter(state="failed").order_by("id"):
        wrongs.append(f"Refund {refund.pk} was refused by the bank: {refund.last_message}")
    return wrongs


def order_page_context(order) -> dict:
    units = order_units(order)
    units_failed = sum(1 for unit in units if unit.status == "failed")
    label, tone = order_status_badge(order, units_failed=units_failed)
    attempts_total = order.delivery_attempts.count()
    from fulfillment_site.console.timeline import ATTEMPTS_SHOWN

    return {
        "order": order,
        "status_label": label,
        "status_tone": tone,
        "amount": rubles(order.amount_kopecks),
        "units": units,
        "units_delivered": sum(1 for unit in units if unit.status == "delivered"),
        "units_total": len(units),
        "wrongs": order_wrongs(order, units),
        "timeline": order_timeline(order),
        "attempts_total": attempts_total,
        "attempts_hidden": max(0, attempts_total - ATTEMPTS_SHOWN),
    }
