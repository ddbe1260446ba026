"""One timeline of everything that happened to an order, in time order.

Each source is a function `(order) -> list[Event]`, registered in SOURCES; a new kind of row
(refunds, customer emails) is one more small function and one `register_source()` call. Every
source runs one query (or none), however long the order's history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from fulfillment_site.console.formatting import provider_amount, rubles
from orders.models import REJECTED_VERDICTS, NotificationVerdict
from orders.refund_state import RefundState

#: Attempts shown in the timeline of one order; the rest are one click away in the attempt list.
ATTEMPTS_SHOWN = 200


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
    created = _("Order %(number)s created: %(amount)s") % {
        "number": order.public_id,
        "amount": rubles(order.amount_kopecks),
    }
    events = [Event(order.created_at, _("Order"), created, who=_("shop"))]
    # refunded_at is stamped by both PARTIALLY_REFUNDED and REFUNDED: say which one it was.
    if order.status == "partially_refunded":
        refunded = _("Partially refunded: the delivered units are kept, the others refunded")
    else:
        refunded = _("Refunded in full")
    for stamp, summary, tone in (
        ("paid_at", pgettext("order status", "Paid"), "ok"),
        ("fulfilled_at", _("Fulfilled: every unit delivered"), "ok"),
        ("cancelled_at", _("Cancelled: not paid"), "warn"),
        ("refunded_at", refunded, "warn"),
    ):
        value = getattr(order, stamp)
        if value:
            events.append(Event(value, _("Order status"), summary, tone=tone))
    return events


@register_source
def notification_events(order) -> list[Event]:
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
            who = record.reviewed_by.get_username() if record.reviewed_by else _("staff")
            detail = f"{detail} " + _("Reviewed by %(who)s.") % {"who": who}
        events.append(Event(record.received_at, _("Payment notification"), summary, detail, tone, who="T-Bank"))
    return events


@register_source
def attempt_events(order) -> list[Event]:
    attempts = list(order.delivery_attempts.order_by("-id").select_related("delivery__item")[:ATTEMPTS_SHOWN])
    events = []
    for attempt in reversed(attempts):
        tone = {"delivered": "ok", "failed": "bad"}.get(attempt.outcome, "")
        code = f" [{attempt.code}]" if attempt.code else ""
        summary = _("Unit %(unit)s: %(outcome)s") % {"unit": attempt.delivery.unit_key, "outcome": attempt.outcome}
        summary += code
        detail = attempt.message
        if attempt.serial:
            detail = f"{detail} " + _("Code: %(code)s") % {"code": attempt.serial}
        what = attempt.get_kind_display()
        detail = f"{detail.strip()} (" + _("%(ms)d ms") % {"ms": attempt.duration_ms} + ")"
        # Which supplier SKU this call went through: routing may move a unit to a backup SKU (an
        # attempt's empty SKU is its item's).
        sku = attempt.sku or attempt.delivery.item.sku
        if sku:
            detail += " · " + _("SKU %(sku)s") % {"sku": sku}
            if attempt.price is not None:
                detail += ", " + _("supplier price %(price)s") % {"price": provider_amount(attempt.price)}
        events.append(Event(attempt.started_at, what, summary, detail, tone, who=attempt.provider))
    return events


@register_source
def staff_events(order) -> list[Event]:
    """Staff actions recorded in the admin history (LogEntry) of this order."""
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(type(order)), object_id=str(order.pk)
    ).select_related("user")
    return [
        Event(entry.action_time, _("Staff action"), entry.get_change_message() or str(entry), who=entry.user.username)
        for entry in entries.order_by("id")
        # A refund staff decided is in the timeline as the refund (refund_events, with who): not twice.
        if not entry.change_message.startswith(STAFF_REFUND_ENTRY)
    ]


#: How the refund action records a decision in the order's admin history (orders/admin_refunds.py).
STAFF_REFUND_ENTRY = '[{"added": {"name": "refund"'


@register_source
def bank_call_events(order) -> list[Event]:
    """Our calls to T-Bank for the order's payment link (Init, CheckOrder, Cancel of a stale link)."""
    events = []
    for call in order.tbank_calls.order_by("id"):
        tone = {"ok": "ok", "refused": "bad", "unknown": "warn"}.get(call.outcome, "")
        summary = f"{call.method}: {call.get_outcome_display()}" + (
            f" (PaymentId {call.payment_id})" if call.payment_id else ""
        )
        events.append(Event(call.created_at, _("T-Bank call"), summary, call.error, tone, who=_("shop")))
    return events


@register_source
def refund_events(order) -> list[Event]:
    """Each refund: the decision (who, why, how much), every call to the bank, the settlement."""
    events = []
    for refund in order.refunds.order_by("id").prefetch_related("attempts"):
        amount = rubles(refund.amount_kopecks)
        events.append(
            Event(
                refund.created_at,
                _("Refund"),
                _("Refund %(id)s of %(amount)s decided: %(reason)s")
                % {"id": refund.pk, "amount": amount, "reason": refund.get_reason_display()},
                f"PaymentId {refund.payment.payment_id if refund.payment_id else '?'}",
                "warn",
                who=refund.decided_by,
            )
        )
        for attempt in refund.attempts.all():
            tone = {"succeeded": "ok", "refused": "bad", "unavailable": "warn"}.get(attempt.outcome, "")
            code = f" [{attempt.error_code}]" if attempt.error_code else ""
            events.append(
                Event(
                    attempt.started_at,
                    _("Refund call"),
                    _("Refund %(id)s: %(method)s %(outcome)s")
                    % {"id": refund.pk, "method": attempt.method, "outcome": attempt.outcome}
                    + code,
                    attempt.message,
                    tone,
                    who="T-Bank",
                )
            )
        if refund.settled_at and refund.state == RefundState.SUCCEEDED:
            made = _("Refund %(id)s of %(amount)s made: the money is back on the card")
            events.append(Event(refund.settled_at, _("Refund"), made % {"id": refund.pk, "amount": amount}, tone="ok"))
        elif refund.state == RefundState.FAILED:
            refused = _("Refund %(id)s of %(amount)s refused by the bank") % {"id": refund.pk, "amount": amount}
            events.append(Event(refund.updated_at, _("Refund"), refused, refund.last_message, "bad"))
    return events


@register_source
def email_events(order) -> list[Event]:
    """Emails to the customer: when each was recorded and when it went out (or why not)."""
    events = []
    for email in order.emails.order_by("id"):
        label = _("%(kind)s email") % {"kind": email_kind_label(email.kind)}
        if email.send_no:
            label += f" #{email.send_no}"
        who = email.requested_by or _("shop")
        what = _("Customer email")
        events.append(Event(email.created_at, what, _("%(email)s queued") % {"email": label}, who=who))
        if email.sent_at:
            sent = _("%(email)s sent to %(to)s") % {"email": label, "to": email.to}
            events.append(Event(email.sent_at, what, sent, tone="ok"))
        elif email.last_error:
            tone = "bad" if email.state == "failed" else "warn"
            state = f"{label}: {email.get_state_display()}"
            events.append(Event(email.created_at, what, state, email.last_error, tone))
    return events


def email_kind_label(kind: str) -> str:
    """The name staff read for a kind of customer email ("codes", "refund"...)."""
    return {"codes": _("Codes"), "refund": _("Refund")}.get(kind, kind)
