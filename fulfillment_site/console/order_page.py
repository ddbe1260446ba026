"""What the order page shows: what is wrong first, the facts, one table of units, the timeline.

A fixed number of queries whatever the size of the order (query budget in
tests/orders/test_query_budgets.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext

from fulfillment.models import Delivery, DeliveryStatus, PauseKind, ProductPause
from fulfillment.providers.base import FailureScope
from fulfillment.selectors import held_units
from fulfillment_site.console.banner import active_halts
from fulfillment_site.console.formatting import duration, provider_amount, rubles
from fulfillment_site.console.problems import paid_too_long_cutoff
from fulfillment_site.console.timeline import ATTEMPTS_SHOWN, order_timeline
from orders.models import NotificationVerdict
from orders.services.refunds import undelivered_units_preview


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
    unit_price: int = 0
    failure_scope: str = ""
    held_by: str = ""  # "halt", "pause" or "price" (a price decision): waiting on a fault not the unit's own
    item_id: int | None = None
    sku: str = ""  # the supplier SKU the unit is (or was) bought through: its item's, or a backup
    cost: str = ""  # what the delivered purchase cost at the supplier, in its currency
    held_price: str = ""  # "price": the supplier's new price the unit waits for staff to accept


UNIT_TONES = {"delivered": "ok", "failed": "bad", "cancelled": "muted", "pending": "info", "sending": "info"}


def order_status_badge(order, *, units_failed: int = 0, now=None) -> tuple[str, str]:
    """(label, tone) that says where an order really is: "Paid — 1 unit failed", not "Paid"."""
    status = order.status
    if status == "paid":
        if units_failed:
            text = ngettext("Paid — %(count)d unit failed", "Paid — %(count)d units failed", units_failed)
            return text % {"count": units_failed}, "bad"
        if order.paid_at and order.paid_at < paid_too_long_cutoff():
            since = duration(((now or timezone.now()) - order.paid_at).total_seconds())
            return _("Paid — delivering for %(since)s") % {"since": since}, "warn"
        return _("Paid — delivering"), "info"
    return {
        "new": (_("New — not paid"), "muted"),
        "fulfilled": (pgettext("order status", "Fulfilled"), "ok"),
        "cancelled": (_("Cancelled — not paid"), "muted"),
        "partially_refunded": (_("Partially refunded"), "warn"),
        "refunded": (_("Refunded in full"), "warn"),
    }.get(status, (order.get_status_display(), "muted"))


def order_units(order) -> list[UnitRow]:
    """Every unit of the order with its product, recipient, status, code, attempts, supplier SKU and
    cost; before payment (no units yet) one row per unit the items will make."""
    labels = dict(DeliveryStatus.choices)
    deliveries = list(
        Delivery.objects.filter(order=order)
        .select_related("item__product")
        .annotate(attempt_count=Count("attempts"))
        .order_by("item_id", "unit_index")
    )
    if deliveries:
        holds = _holds(order, deliveries)
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
                unit_price=unit.item.unit_price_kopecks,
                failure_scope=unit.failure_scope,
                held_by=holds.get(unit.pk, ("", ""))[0],
                held_price=holds.get(unit.pk, ("", ""))[1],
                item_id=unit.item_id,
                sku=unit.sku or unit.item.sku,
                cost=provider_amount(unit.cost) if unit.cost is not None else "",
            )
            for unit in deliveries
        ]
    rows = []
    for item in order.items.select_related("product"):
        for _unit in range(item.quantity):
            rows.append(
                UnitRow(
                    product=item.product.name,
                    recipient=item.recipient,
                    status="",
                    status_label=_("Not created (order not paid)"),
                    tone="muted",
                    code="",
                    attempts=0,
                    reference="",
                    message="",
                    unit_key="",
                    delivery_id=None,
                    unit_price=item.unit_price_kopecks,
                    sku=item.sku,
                )
            )
    return rows


def _holds(order, deliveries: list) -> dict[int, tuple[str, str]]:
    """{unit pk: (why, new price)} for the units a fault that is not their own holds back: "halt"
    (their provider), "pause" (their SKU) or "price" (a repricing pause waits for staff to buy them at
    the supplier's new price). The selector decides which units are held; this only says why."""
    if not any(unit.status == DeliveryStatus.WAITING for unit in deliveries):
        return {}
    halted = {halt["provider"] for halt in active_halts()}
    pauses = {
        (provider, sku): (kind, price)
        for provider, sku, kind, price in ProductPause.objects.values_list("provider", "sku", "kind", "price")
    }
    if not halted and not pauses:
        return {}
    held = set(held_units(order_id=order.pk).values_list("pk", flat=True))
    holds = {}
    for unit in deliveries:
        if unit.pk not in held:
            continue
        provider = unit.provider or unit.item.provider or settings.FULFILLMENT_PROVIDER
        kind, price = pauses.get((provider, unit.sku or unit.item.sku), ("", None))
        if provider in halted:
            holds[unit.pk] = ("halt", "")
        elif kind == PauseKind.REPRICING and price is not None:
            holds[unit.pk] = ("price", provider_amount(price))
        else:
            holds[unit.pk] = ("pause", "")
    return holds


@dataclass(frozen=True)
class Wrong:
    """One thing wrong with an order: what, why, and which actions on the page apply (keys)."""

    text: str
    actions: tuple[str, ...] = ()


def order_wrongs(order, units: list[UnitRow]) -> list[Wrong]:
    """What is wrong with this order, in words staff can act on, each with the actions that help;
    empty when nothing is."""
    wrongs = []
    # The refund decision refuses while any unit is still in progress: then no Refund button either.
    refund_offered = any(unit.status in ("waiting", "sending", "pending") for unit in units)
    if order.status == "paid":
        for unit in units:
            if unit.status != "failed":
                continue
            why = unit.message or _("no message from the provider")
            text = _("Unit %(unit)s (%(product)s → %(recipient)s) failed: %(why)s") % {
                "unit": unit.unit_key,
                "product": unit.product,
                "recipient": unit.recipient,
                "why": why,
            }
            # One refund covers every failed unit: its button (with the amount) comes once, on the first.
            refund = () if refund_offered else ("refund",)
            refund_offered = True
            if unit.failure_scope == FailureScope.PERMANENT:
                # A retry buys the same thing for the same recipient again: it cannot help.
                text += " " + _("A retry will fail the same way: correct the recipient, or refund the unit.")
                wrongs.append(Wrong(text, (f"correct:{unit.item_id}", *refund)))
            else:
                text += " " + _("Fix the cause, then retry (a new purchase under a new reference), or refund the unit.")
                wrongs.append(Wrong(text, ("retry", f"correct:{unit.item_id}", *refund)))
        held = [unit for unit in units if unit.held_by]
        halts = {halt["provider"]: halt for halt in active_halts()}
        open_units = any(unit.status in ("waiting", "sending", "pending") for unit in units)
        refund_held = ("refund_held",)
        for provider, halt in halts.items():
            if open_units:
                text = _(
                    "Deliveries through %(provider)s are halted: %(reason)s The units wait until the halt is lifted; "
                    "or refund them now."
                ) % {"provider": provider, "reason": halt["reason"]}
                wrongs.append(Wrong(text, refund_held))
                refund_held = ()  # one button for all held units, on the first reason
        priced = [unit for unit in held if unit.held_by == "price"]
        if priced:
            names = ", ".join(sorted({f"{unit.product} ({unit.sku}: {unit.held_price})" for unit in priced}))
            text = ngettext(
                "%(count)d unit waits for a price decision: the supplier raised its price (%(names)s) above what "
                "the sale allowed. Buy it at the supplier's new price (the shop takes a smaller margin), or "
                "refund it.",
                "%(count)d units wait for a price decision: the supplier raised its price (%(names)s) above what "
                "the sale allowed. Buy them at the supplier's new price (the shop takes a smaller margin), or "
                "refund them.",
                len(priced),
            ) % {"count": len(priced), "names": names}
            wrongs.append(Wrong(text, ("buy_at_new_price", *refund_held)))
            refund_held = ()
        paused = [unit for unit in held if unit.held_by == "pause"]
        if paused:
            names = ", ".join(sorted({unit.product for unit in paused}))
            text = ngettext(
                "%(count)d unit waits: its product (%(names)s) is paused at the provider. It is sent once the pause "
                "lifts; or refund it now.",
                "%(count)d units wait: their product (%(names)s) is paused at the provider. They are sent once the "
                "pause lifts; or refund them now.",
                len(paused),
            ) % {"count": len(paused), "names": names}
            wrongs.append(Wrong(text, refund_held))
        if order.paid_at and order.paid_at < paid_too_long_cutoff() and not held:
            since = duration((timezone.now() - order.paid_at).total_seconds())
            wrongs.append(Wrong(_("Paid %(since)s ago and still not fulfilled.") % {"since": since}))
    to_review = order.notifications.filter(verdict=NotificationVerdict.NEEDS_REVIEW, reviewed_at__isnull=True)
    for record in to_review.order_by("id"):
        text = _("Payment notification %(id)s needs review: %(detail)s") % {"id": record.pk, "detail": record.detail}
        wrongs.append(Wrong(text, (f"review:{record.pk}",)))
    for flag in order.flags.filter(resolved_at__isnull=True).order_by("id"):
        text = _("Flagged (%(kind)s): %(reason)s") % {"kind": flag.get_kind_display(), "reason": flag.reason}
        wrongs.append(Wrong(text, (f"resolve:{flag.pk}",)))
    for refund in order.refunds.filter(state="failed").order_by("id"):
        text = _("Refund %(id)s of %(amount)s was refused by the bank: %(why)s") % {
            "id": refund.pk,
            "amount": rubles(refund.amount_kopecks),
            "why": refund.last_message or "—",
        }
        wrongs.append(Wrong(text, (f"resend:{refund.pk}",)))
    return wrongs


def _held_refund(order, units: list[UnitRow]) -> dict:
    """What "Refund these units" would refund for units a halt or pause holds (they are stopped
    first, with the failed ones): nothing offered when that refund would be refused or empty."""
    if order.status != "paid" or not any(unit.held_by for unit in units):
        return {"held_refund_count": 0, "held_refund_amount": ""}

    preview = undelivered_units_preview(order_id=order.pk, include_held=True)
    if preview.problem or not preview.units:
        return {"held_refund_count": 0, "held_refund_amount": ""}
    return {"held_refund_count": len(preview.units), "held_refund_amount": rubles(preview.amount_kopecks)}


def order_page_context(order) -> dict:
    units = order_units(order)
    units_failed = sum(1 for unit in units if unit.status == "failed")
    label, tone = order_status_badge(order, units_failed=units_failed)
    attempts_total = order.delivery_attempts.count()

    return {
        "order": order,
        "status_label": label,
        "status_tone": tone,
        "amount": rubles(order.amount_kopecks),
        "units": units,
        "units_delivered": sum(1 for unit in units if unit.status == "delivered"),
        "units_total": len(units),
        "wrongs": order_wrongs(order, units),
        "failed_count": units_failed,
        "failed_amount": rubles(sum(unit.unit_price for unit in units if unit.status == "failed")),
        "held_units": [unit for unit in units if unit.held_by],
        "held_amount": rubles(sum(unit.unit_price for unit in units if unit.held_by)),
        **_held_refund(order, units),
        "timeline": order_timeline(order),
        "attempts_total": attempts_total,
        "attempts_hidden": max(0, attempts_total - ATTEMPTS_SHOWN),
    }
