"""One timeline of everything that happened to an order, in time order.

Each source is a function `(order) -> list[Event]`, registered in SOURCES; a new kind of row
(refunds, customer emails) is one more small function and one `register_source()` call. Every
source runs one query (or none), however long the order's history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from console.formatting import rubles

#: Attempts shown in the timeline of one order; the rest are one click away in the attempt list.
ATTEMPTS_SHOWN = 200

# Verdicts of notifications that were turned away: they stand out wherever they are listed.
REJECTED_VERDICTS = frozenset({"forbidden", "malformed", "unknown_order", "amount_mismatch"})


@dataclass(frozen=True)
class Event:
    at: datetime
    what: str  # short: "Payment notification", "Purchase", "Staff action"
    summary: str  # one line: "CONFIRMED: applied"
    detail: str = ""  # the long text: messages, reasons
    tone: str = ""  # "", "ok", "warn", "bad"
    who: str = ""  # the staff member, the provider, T-Bank


Source = Callable[["object"], list[Event]]
SOURCES: list[Source] = []


def register_source(source: Source) -> Source:
    if source not in SOURCES:
        SOURCES.append(source)
    return source


def order_timeline(order) -> list[Event]:
    events = [event for source in SOURCES for event in source(order)]
    # Stable: events of one instant keep their source's order (created before paid...).
    return sorted(events, key=lambda event: event.at)


@register_source
def order_status_events(order) -> list[Event]:
    """Creation and each status the order reached (the stamps the status machine writes)."""
    events = [Event(order.created_at, "Order", f"Created: {rubles(order.amount_kopecks)}", who="shop")]
    for stamp, summary, tone in (
        ("paid_at", "Paid", "ok"),
        ("fulfilled_at", "Fulfilled: every unit delivered", "ok"),
        ("cancelled_at", "Cancelled", "warn"),
        ("refunded_at", "Refunded", "warn"),
    ):
        value = getattr(order, stamp)
        if value:
            events.append(Event(value, "Order status", summary, tone=tone))
    return events


@register_source
def notification_events(order) -> list[Event]:
    from orders.models import NotificationVerdict

    labels = dict(NotificationVerdict.choices)
    events = []
    for record in order.notifications.order_by("id").select_related("reviewed_by"):
        tone = "bad" if record.verdict in REJECTED_VERDICTS else ""
        if record.verdict == NotificationVerdict.NEEDS_REVIEW:
            tone = "" if record.reviewed_at else "warn"
        verdict = labels.get(record.verdict, record.verdict)
        summary = f"{record.bank_status or '?'}: {verdict} (HTTP {record.http_status})"
        detail = record.detail
        if record.reviewed_at:
            who = record.reviewed_by.get_username() if record.reviewed_by else "staff"
            detail = f"{detail} Reviewed by {who}."
        events.append(Event(record.received_at, "Payment notification", summary, detail, tone, who="T-Bank"))
    return events


@register_source
def attempt_events(order) -> list[Event]:
    attempts = list(order.delivery_attempts.order_by("-id").select_related("delivery")[:ATTEMPTS_SHOWN])
    events = []
    for attempt in reversed(attempts):
        tone = {"delivered": "ok", "failed": "bad"}.get(attempt.outcome, "")
        code = f" [{attempt.code}]" if attempt.code else ""
        summary = f"Unit {attempt.delivery.unit_key}: {attempt.outcome}{code}"
        detail = attempt.message
        if attempt.serial:
            detail = f"{detail} Code: {attempt.serial}".strip()
        what = {"purchase": "Purchase", "check": "Status check", "callback": "Provider callback"}.get(
            attempt.kind, attempt.kind
        )
        detail = f"{detail} ({attempt.duration_ms} ms)".strip()
        events.append(Event(attempt.started_at, what, summary, detail, tone, who=attempt.provider))
    return events


@register_source
def staff_events(order) -> list[Event]:
    """Staff actions recorded in the admin history (LogEntry) of this order."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(type(order)), object_id=str(order.pk)
    ).select_related("user")
    return [
        Event(entry.action_time, "Staff action", entry.get_change_message() or str(entry), who=entry.user.username)
        for entry in entries.order_by("id")
    ]
