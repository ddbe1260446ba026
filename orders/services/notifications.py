"""Processing of T-Bank payment notifications: verify, apply to the order, record for audit."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fulfillment_site.logs import bind_order
from fulfillment_site.networks import Network, address_in, networks_parse
from orders import tbank
from orders.models import NotificationSource, NotificationVerdict, Order, Payment, PaymentNotification
from orders.services import refunds
from orders.services.lifecycle import order_cancel, order_mark_paid, order_mark_paid_if_new, order_refund
from orders.state import OrderStatus

logger = logging.getLogger(__name__)


@dataclass
class NotificationOutcome:
    """What the webhook answers, and what the audit record says."""

    http_status: int
    verdict: str
    detail: str
    order: Order | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def response_body(self) -> str:
        # The bank treats exactly "OK" as delivered; everything else is retried later.
        return "OK" if self.http_status == 200 else self.detail


class PaymentConfigurationError(Exception):
    """The shop cannot verify notifications: terminal credentials are not configured."""


#: Credentials anyone can read: .env.example's and the public examples of T-Bank's documentation.
#: A shop running with one of them (DEBUG off) would take notifications signed by anybody.
DEMO_CREDENTIALS: dict[str, frozenset[str]] = {
    "TBANK_PASSWORD": frozenset({"demo-password-change-me", "Dfsfh56dgKl", "11111111111", "usaf8fw8fsw21g"}),
    "TBANK_TERMINAL_KEY": frozenset({"DemoTerminal", "1234567890DEMO", "1321054611234DEMO"}),
}


def demo_credentials_in_use() -> list[str]:
    """The T-Bank settings that hold a published demo value; empty in development (DEBUG on)."""
    if settings.DEBUG:
        return []
    return [name for name, values in DEMO_CREDENTIALS.items() if str(getattr(settings, name, "")).strip() in values]


def allowed_networks() -> list[Network]:
    """TBANK_ALLOWED_NETWORKS parsed; raises PaymentConfigurationError naming a bad entry."""
    try:
        return networks_parse(
            settings.TBANK_ALLOWED_NETWORKS, setting="TBANK_ALLOWED_NETWORKS", example="91.194.226.0/23"
        )
    except ValueError as exc:
        raise PaymentConfigurationError(str(exc)) from exc


#: Characters of a body that failed authentication kept in its record (Token masked).
REJECTED_PREFIX_CHARS = 120


def source_address(remote_addr: str | None) -> str | None:
    """`remote_addr` as a canonical IP address, or None when it is not one.

    A proxy may forward anything (`91.194.226.10:51234`, a host name, garbage): that is an
    unknown source, never an error (PostgreSQL's inet column would refuse it).
    """
    if not remote_addr:
        return None
    try:
        address = ipaddress.ip_address(remote_addr.strip())
    except ValueError:
        return None
    if getattr(address, "scope_id", None):
        return None  # fe80::1%eth0: a zone is local to the proxy's host, and inet cannot hold one
    return str(address)


def _source_allowed(source: str | None, networks: list[Network]) -> bool:
    return not networks or address_in(source, networks)


def payment_notification_process(*, body: bytes, remote_addr: str | None = None) -> NotificationOutcome:
    """Verify, apply and record one T-Bank notification.

    Every notification leaves a PaymentNotification row, whatever its verdict. One that is
    authenticated (Token and TerminalKey valid) is stored as sent, Token masked, in the same
    transaction as the order change it causes: either both happen or neither, and the bank,
    seeing a non-OK answer, sends it again. One that is not (a source outside
    TBANK_ALLOWED_NETWORKS, checked first and before the body is even parsed, a body that is
    not a notification, a bad Token) leaves only a bounded summary: its SHA-256, its size, the
    source, the reason and its first REJECTED_PREFIX_CHARS characters.
    """
    if not settings.TBANK_TERMINAL_KEY or not settings.TBANK_PASSWORD:
        raise PaymentConfigurationError(
            "TBANK_TERMINAL_KEY and TBANK_PASSWORD must be set to verify payment notifications."
        )
    demo = demo_credentials_in_use()
    if demo:
        raise PaymentConfigurationError(
            f"{' and '.join(demo)} hold the published demo value; set the terminal's own credentials."
        )
    source = source_address(remote_addr)
    if not _source_allowed(source, allowed_networks()):
        shown = source or (f"{remote_addr[:60]!r}, not an IP address" if remote_addr else "unknown")
        outcome = NotificationOutcome(
            403, NotificationVerdict.FORBIDDEN, f"Source address ({shown}) is not in TBANK_ALLOWED_NETWORKS."
        )
        _record_rejected(outcome, body=body, address=source)
        return outcome
    try:
        payload = tbank.parse_notification(body)
    except tbank.MalformedNotification as exc:
        outcome = NotificationOutcome(400, NotificationVerdict.MALFORMED, str(exc))
        _record_rejected(outcome, body=body, address=source)
        return outcome
    outcome = _authenticate(payload)
    if outcome is not None:
        _record_rejected(outcome, body=body, address=source)
        return outcome

    limit = settings.PAYMENT_NOTIFICATION_MAX_STORED_BYTES
    outcome = _validate_fields(payload)
    if outcome is not None:
        _record(outcome, body=body, limit=limit, address=source)
        return outcome

    order_ref = str(payload["OrderId"])
    with transaction.atomic():
        order = None
        # Public ids are short ASCII; anything else cannot name an order (and a NUL cannot be queried).
        if order_ref.isascii() and "\x00" not in order_ref and len(order_ref) <= 36:
            outcome = _pay_if_new(order_ref, payload)
            if outcome is not None:
                _payment_captured(outcome.order, str(payload.get("PaymentId") or ""), payload["Amount"])
                _record(outcome, body=body, limit=limit, address=source)
                return outcome
            order = Order.objects.select_for_update(no_key=True).filter(public_id=order_ref).first()
        if order is None:
            outcome = NotificationOutcome(
                404, NotificationVerdict.UNKNOWN_ORDER, f"No order with OrderId {order_ref!r}.", payload=payload
            )
            _record(outcome, body=body, limit=limit, address=source)
            return outcome
        # To the end of the request: the delivery is queued, and the answer logged, after this returns.
        bind_order(order.public_id, pk=order.pk)
        return payment_status_apply(order=order, payload=payload, body=body, remote_addr=source)


def payment_status_apply(
    *,
    order: Order,
    payload: dict[str, Any],
    body: bytes,
    remote_addr: str | None = None,
    source: str = NotificationSource.WEBHOOK,
) -> NotificationOutcome:
    """Apply one authentic payment status to `order` and record it, whatever the verdict.

    The one path for every status the bank tells us, whether it notified us (`source`
    WEBHOOK, `payload` verified by its Token) or we asked it with GetState (POLLING, the
    answer of our own signed call). The caller holds the order's row lock in a transaction.
    """
    outcome = _apply(order, payload)
    _record(
        outcome,
        body=body,
        limit=settings.PAYMENT_NOTIFICATION_MAX_STORED_BYTES,
        address=source_address(remote_addr),
        notification_source=source,
    )
    return outcome


def _pay_if_new(order_ref: str, payload: dict[str, Any]) -> NotificationOutcome | None:
    """The common case in one statement: a successful CONFIRMED for a NEW order of that amount
    pays it (what _apply decides for it, without reading the order first). None when it is
    anything else, changing nothing: the order is then read under its lock and _apply decides."""
    amount = payload.get("Amount")
    if payload["Status"] != tbank.CONFIRMED or payload.get("Success") is False or not _is_storable_int(amount):
        return None
    order = order_mark_paid_if_new(
        public_id=order_ref, amount_kopecks=amount, payment_id=str(payload.get("PaymentId") or "")
    )
    if order is None:
        return None
    return NotificationOutcome(
        200, NotificationVerdict.APPLIED, "Order new -> paid; delivery queued.", order=order, payload=payload
    )


def _authenticate(payload: dict[str, Any]) -> NotificationOutcome | None:
    if not tbank.terminal_key_is_valid(payload, settings.TBANK_TERMINAL_KEY):
        return NotificationOutcome(403, NotificationVerdict.FORBIDDEN, "Unknown TerminalKey.", payload=payload)
    if not tbank.token_is_valid(payload, settings.TBANK_PASSWORD):
        return NotificationOutcome(403, NotificationVerdict.FORBIDDEN, "Token does not match.", payload=payload)
    return None


def _validate_fields(payload: dict[str, Any]) -> NotificationOutcome | None:
    amount = payload.get("Amount")
    if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool) or amount < 0):
        return NotificationOutcome(
            400,
            NotificationVerdict.MALFORMED,
            "Field Amount must be a non-negative integer (kopecks).",
            payload=payload,
        )
    if payload["Status"] == tbank.CONFIRMED and amount is None:
        return NotificationOutcome(
            400, NotificationVerdict.MALFORMED, "A CONFIRMED notification must carry Amount.", payload=payload
        )
    payment_id = payload.get("PaymentId")
    if payment_id is not None and not tbank._is_id(payment_id):
        return NotificationOutcome(
            400, NotificationVerdict.MALFORMED, "Field PaymentId must be a string or an integer.", payload=payload
        )
    if payment_id is not None and len(str(payment_id)) > Order._meta.get_field("payment_id").max_length:
        # The bank's ids are 20 digits at most; a longer one would not fit the order (a 503 on PostgreSQL).
        return NotificationOutcome(
            400, NotificationVerdict.MALFORMED, "Field PaymentId must be at most 64 characters.", payload=payload
        )
    return None


def _apply(order: Order, payload: dict[str, Any]) -> NotificationOutcome:
    status = payload["Status"]
    payment_id = str(payload.get("PaymentId") or "")
    current = order.status

    def outcome(http_status: int, verdict: str, detail: str) -> NotificationOutcome:
        return NotificationOutcome(http_status, verdict, detail, order=order, payload=payload)

    if status == tbank.CONFIRMED:
        if payload.get("Success") is False:
            return outcome(200, NotificationVerdict.RECORDED, "CONFIRMED with Success=false: nothing to do.")
        if payload["Amount"] != order.amount_kopecks:
            return outcome(
                409,
                NotificationVerdict.AMOUNT_MISMATCH,
                f"Amount {payload['Amount']} does not match order {order.pk} amount {order.amount_kopecks}; "
                "the order was not marked paid.",
            )
        if current in refunds.PAID_STATUSES and (order.payment_id and payment_id and payment_id != order.payment_id):
            return _double_payment(order, payload, payment_id, outcome)
        if current in (OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED):
            return outcome(200, NotificationVerdict.DUPLICATE, f"Order is already {current}.")
        if current == OrderStatus.REFUNDED:
            return outcome(200, NotificationVerdict.IGNORED, "Order is already refunded; not paid again.")
        if current == OrderStatus.CANCELLED and _money_returned_before(order, payment_id):
            # The bank retried a CONFIRMED (we had answered non-OK) after the payment was already
            # refunded: the money came and went, so record both and deliver nothing.
            order_mark_paid(order_id=order.pk, payment_id=payment_id, current=current)
            _payment_captured(order, payment_id, payload["Amount"])
            order_refund(order_id=order.pk, current=OrderStatus.PAID)
            if payment_id:
                payment = Payment.objects.get(payment_id=payment_id)
                # A repeated REFUNDED may already have recorded it (while the order had no payment).
                rest = payment.amount_kopecks - payment.refunded_kopecks
                portal = (
                    refunds.portal_refund_record(order, payment, rest, "REFUNDED")
                    if rest > 0
                    else payment.refunds.filter(reason="portal").order_by("-id").first()
                )
                if portal is not None:
                    refunds.portal_full_refund_link_units(order_id=order.pk, refund=portal)
            return outcome(
                200,
                NotificationVerdict.APPLIED,
                f"Order {current} -> paid -> refunded: PaymentId {payment_id} was refunded before this CONFIRMED "
                "arrived; nothing is delivered.",
            )
        order_mark_paid(order_id=order.pk, payment_id=payment_id, current=current)
        _payment_captured(order, payment_id, payload["Amount"])
        return outcome(200, NotificationVerdict.APPLIED, f"Order {current} -> paid; delivery queued.")

    if status == "PARTIAL_REFUNDED" and current in (OrderStatus.NEW, OrderStatus.CANCELLED):
        # A partial refund proves the payment was captured: the order is paid by it, whatever
        # told us first (a lost CONFIRMED; an earlier attempt declined, then this one paid).
        return _partly_refunded_before_its_capture(order, payload, payment_id, outcome)

    # Money returned before any capture reached us: the order will not be paid by this payment.
    # (Cancelling it is also what lets a late CONFIRMED find the refund; see _money_returned_before.)
    if status in tbank.FAILED_PAYMENT_STATUSES or (
        status in tbank.MONEY_RETURNED_STATUSES and current == OrderStatus.NEW
    ):
        if current == OrderStatus.NEW:
            order_cancel(order_id=order.pk, current=current)
            return outcome(200, NotificationVerdict.APPLIED, f"Payment {status}: order new -> cancelled.")
        if current == OrderStatus.CANCELLED:
            return outcome(200, NotificationVerdict.DUPLICATE, "Order is already cancelled.")
        return outcome(200, NotificationVerdict.IGNORED, f"{status} cannot downgrade an order that is {current}.")

    if status in tbank.MONEY_RETURNED_STATUSES or status in tbank.PARTIAL_STATUSES:
        return _money_returned(order, payload, status, payment_id, outcome)
    if status == tbank.AUTHORIZED:
        return outcome(200, NotificationVerdict.RECORDED, "Payment authorized (hold); waiting for CONFIRMED.")
    return outcome(200, NotificationVerdict.RECORDED, f"Status {status} recorded; no action.")


def _payment_captured(order: Order, payment_id: str, amount: int) -> None:
    """Make sure the captured PaymentId has its Payment row (Init may not have created it: a
    payment made before checkout recorded payments, or one the customer started again), marked
    captured. One statement: an upsert on the unique PaymentId."""
    if not payment_id:
        return
    now = timezone.now()
    Payment.objects.bulk_create(
        [
            Payment(
                order=order,
                payment_id=payment_id,
                amount_kopecks=amount,
                bank_status=tbank.CONFIRMED,
                captured_at=now,
            )
        ],
        update_conflicts=True,
        unique_fields=["payment_id"],
        update_fields=["bank_status", "captured_at", "updated_at"],
    )


def _double_payment(order: Order, payload: dict[str, Any], payment_id: str, outcome) -> NotificationOutcome:
    """A CONFIRMED for another PaymentId of an order already paid: the customer paid twice. The
    order keeps its first payment and its deliveries; the second is refunded in full, once."""
    payment = Payment.objects.filter(payment_id=payment_id).first()
    if payment is not None and payment.order_id != order.pk:
        return outcome(
            200,
            NotificationVerdict.NEEDS_REVIEW,
            f"PaymentId {payment_id} is recorded for order {payment.order_id}, not order {order.pk}: "
            "check both orders.",
        )
    if payment is None or payment.captured_at is None:
        _payment_captured(order, payment_id, payload["Amount"])
        payment = Payment.objects.get(payment_id=payment_id)
    if _money_returned_before(order, payment_id) and payment.refunded_kopecks == 0:
        # Its refund (made in the portal) arrived before this CONFIRMED: record it, refund nothing.
        refunds.portal_refund_record(order, payment, payment.amount_kopecks, "REFUNDED")
        return outcome(
            200,
            NotificationVerdict.RECORDED,
            f"Second payment {payment_id} for order {order.pk} was refunded before this CONFIRMED arrived.",
        )
    refund, created = refunds.refund_decide_double_payment(order=order, payment=payment)
    if refund is None:
        return outcome(
            200, NotificationVerdict.DUPLICATE, f"Second payment {payment_id} for order {order.pk} is already refunded."
        )
    logger.warning("Order %s captured twice: PaymentId %s and %s", order.pk, order.payment_id, payment_id)
    if not created:
        return outcome(
            200,
            NotificationVerdict.DUPLICATE,
            f"Second captured payment (PaymentId {payment_id}) for order {order.pk}: refund {refund.pk} "
            f"({refund.get_state_display().lower()}) already returns it.",
        )
    return outcome(
        200,
        NotificationVerdict.APPLIED,
        f"Second captured payment (PaymentId {payment_id}) for order {order.pk}, already paid by PaymentId "
        f"{order.payment_id}: the customer paid twice. Refund {refund.pk} of the whole second payment "
        f"({refund.amount_kopecks / 100:.2f} RUB) is being sent automatically; the order keeps its first payment "
        "and its deliveries.",
    )


def _payment_of(order: Order, payment_id: str) -> Payment | None:
    """The Payment the bank talks about: one of this order's; the order's own payment gets its
    row on first use (orders paid before Payment rows existed)."""
    primary = order.payment_id
    if payment_id:
        payment = Payment.objects.filter(order=order, payment_id=payment_id).first()
        if payment is not None or payment_id != primary:
            return payment
    if not primary or order.status not in refunds.PAID_STATUSES:
        return None
    payment, _ = Payment.objects.get_or_create(
        payment_id=primary,
        defaults={
            "order": order,
            "amount_kopecks": order.amount_kopecks,
            "bank_status": tbank.CONFIRMED,
            "captured_at": order.paid_at,
        },
    )
    return payment if payment.order_id == order.pk else None


def _money_returned(order: Order, payload: dict[str, Any], status: str, payment_id: str, outcome):
    current = order.status
    full = status in tbank.MONEY_RETURNED_STATUSES
    payment = _payment_of(order, payment_id)
    if payment is None:
        if not full:
            detail = f"{status} recorded; partial refunds need staff review."
            return outcome(200, NotificationVerdict.NEEDS_REVIEW, detail)
        if order.payment_id and payment_id and payment_id != order.payment_id:
            return outcome(
                200,
                NotificationVerdict.IGNORED,
                f"{status} is for PaymentId {payment_id}, but the order was paid by {order.payment_id}.",
            )
        if current == OrderStatus.REFUNDED:
            return outcome(200, NotificationVerdict.DUPLICATE, "Order is already refunded.")
        return outcome(200, NotificationVerdict.IGNORED, f"{status} on an order that is {current}: nothing to refund.")

    extra = payment.payment_id != order.payment_id
    match = refunds.refund_notification_apply(
        order=order, payment=payment, status=status, amount=payload.get("Amount"), payload=payload
    )
    which = f"extra payment {payment.payment_id}" if extra else f"PaymentId {payment.payment_id}"
    if match.kind == "ours":
        detail = f"Recorded: our refund {match.ids} of {which}."
        if match.portal_refund is not None:
            detail += (
                f" The bank returned {match.portal_amount / 100:.2f} RUB more, refunded outside this service "
                f"(recorded as refund {match.portal_refund.pk})."
            )
        if not extra and full and match.portal_refund is not None:
            return _order_refunded_in_portal(order, match, outcome, prefix=detail + " ")
        return outcome(200, NotificationVerdict.RECORDED, detail)
    if match.kind == "duplicate":
        ours = [refund for refund in match.refunds if refund.reason != "portal"]
        if ours:
            ids = ", ".join(str(refund.pk) for refund in ours)
            return outcome(200, NotificationVerdict.DUPLICATE, f"Already recorded: our refund {ids} of {which}.")
        if full and current == OrderStatus.REFUNDED and not extra:
            return outcome(200, NotificationVerdict.DUPLICATE, "Order is already refunded.")
        return outcome(200, NotificationVerdict.DUPLICATE, f"{status} for {which} is already recorded.")
    if match.kind == "unknown":
        return outcome(
            200,
            NotificationVerdict.NEEDS_REVIEW,
            f"{status} recorded; partial refunds need staff review (the amount returned cannot be told from "
            f"Amount {payload.get('Amount')!r}).",
        )
    # Refunded outside the service, in the bank's portal.
    if extra:
        return outcome(
            200,
            NotificationVerdict.RECORDED,
            f"Refund of the extra payment {payment.payment_id} ({match.portal_amount / 100:.2f} RUB) made in the "
            f"T-Bank portal, recorded as refund {match.portal_refund.pk}; the order's deliveries are untouched.",
        )
    if full:
        return _order_refunded_in_portal(order, match, outcome)
    bound, detail = refunds.portal_partial_refund_bind(order_id=order.pk, refund=match.portal_refund)
    return outcome(
        200,
        NotificationVerdict.APPLIED if bound else NotificationVerdict.NEEDS_REVIEW,
        f"{status}: {match.portal_amount / 100:.2f} RUB of PaymentId {payment.payment_id} refunded outside this "
        f"service (recorded as refund {match.portal_refund.pk}). {detail}",
    )


def _partly_refunded_before_its_capture(order: Order, payload: dict[str, Any], payment_id: str, outcome):
    """PARTIAL_REFUNDED for a NEW or CANCELLED order: its CONFIRMED has not reached us (lost, or
    still on its way), the payment was captured, and part of it was refunded (in the portal). The
    order is paid by it, then the refund is applied as any portal refund (bound to units, or
    flagged for staff). Taken as a refund of an extra payment instead, the order would be paid
    later by the same payment and deliver everything: goods and money both given."""
    payment = Payment.objects.filter(order=order, payment_id=payment_id).first() if payment_id else None
    if payment is None or payment.amount_kopecks != order.amount_kopecks:
        return outcome(
            200,
            NotificationVerdict.NEEDS_REVIEW,
            f"PARTIAL_REFUNDED for PaymentId {payment_id or '?'} of order {order.pk}, which is still new, and no "
            "payment of the order's amount is recorded under that id: check the payment in the T-Bank portal.",
        )
    current = order.status
    amount_left = payload.get("Amount")
    if _money_returned_before(order, payment_id) or (
        _is_storable_int(amount_left) and payment.amount_kopecks - amount_left <= payment.refunded_kopecks
    ):
        # An older state than the books know (the whole payment, or more of it, already came back):
        # it proves a capture whose money is gone, not an order to deliver.
        return outcome(
            200,
            NotificationVerdict.DUPLICATE,
            f"PARTIAL_REFUNDED for PaymentId {payment_id} of order {order.pk} ({current}) is older than what is "
            f"recorded ({payment.refunded_kopecks / 100:.2f} RUB of it returned): nothing to do.",
        )
    order_mark_paid(order_id=order.pk, payment_id=payment_id, current=current)
    _payment_captured(order, payment_id, payment.amount_kopecks)
    order.refresh_from_db()
    money = _money_returned(order, payload, "PARTIAL_REFUNDED", payment_id, outcome)
    money.detail = f"Order {current} -> paid (its CONFIRMED has not arrived: the payment was captured). {money.detail}"
    return money


def _order_refunded_in_portal(order: Order, match, outcome, prefix: str = "") -> NotificationOutcome:
    current = order.status
    refunds.portal_full_refund_link_units(order_id=order.pk, refund=match.portal_refund)
    if current in (OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.PARTIALLY_REFUNDED):
        order_refund(order_id=order.pk, current=current)
        return outcome(
            200,
            NotificationVerdict.APPLIED,
            f"{prefix}Order {current} -> refunded; undelivered units will not be sent.",
        )
    return outcome(200, NotificationVerdict.RECORDED, f"{prefix}Recorded: order is {current}.")


def _money_returned_before(order: Order, payment_id: str) -> bool:
    """Whether an authentic REFUNDED/REVERSED for this payment arrived before its CONFIRMED."""
    if not payment_id:
        return False
    return (
        PaymentNotification.objects.filter(
            order=order, payment_id=payment_id, bank_status__in=tbank.MONEY_RETURNED_STATUSES
        )
        .exclude(verdict__in=(NotificationVerdict.FORBIDDEN, NotificationVerdict.MALFORMED))
        .exists()
    )


def _is_storable_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _text(value: Any, max_length: int | None = None) -> str:
    # PostgreSQL text cannot hold NUL; a body carrying one must still leave its audit record.
    return str(value).replace("\x00", "\ufffd")[:max_length]


def _record(
    outcome: NotificationOutcome,
    *,
    body: bytes,
    limit: int,
    address: str | None,
    notification_source: str = NotificationSource.WEBHOOK,
) -> None:
    """Store an authenticated notification (or a status we polled): the body as sent, Token
    masked, cut at `limit`."""
    _create_record(
        outcome,
        body=body,
        address=address,
        authenticated=True,
        raw_body=tbank.redact_body(body, limit),
        notification_source=notification_source,
    )


def _record_rejected(outcome: NotificationOutcome, *, body: bytes, address: str | None) -> None:
    """Store a bounded summary of a request that failed authentication: never its whole body,
    which anyone can make as large as the web server accepts."""
    prefix = tbank.redact_body(body, len(body))[:REJECTED_PREFIX_CHARS]
    _create_record(outcome, body=body, address=address, authenticated=False, raw_body=prefix)


def _create_record(
    outcome: NotificationOutcome,
    *,
    body: bytes,
    address: str | None,
    authenticated: bool,
    raw_body: str,
    notification_source: str = NotificationSource.WEBHOOK,
) -> None:
    payload = outcome.payload
    amount = payload.get("Amount")
    PaymentNotification.objects.create(
        order=outcome.order,
        order_ref=_text(payload.get("OrderId", ""), 100),
        bank_status=_text(payload.get("Status", ""), 40),
        payment_id=_text(payload.get("PaymentId") or "", 64),
        amount_kopecks=amount if _is_storable_int(amount) else None,
        verdict=outcome.verdict,
        http_status=outcome.http_status,
        detail=_text(outcome.detail, 2000),
        authenticated=authenticated,
        raw_body=_text(raw_body),
        body_sha256=hashlib.sha256(body).hexdigest(),
        body_size=len(body),
        remote_addr=address,
        source=notification_source,
    )
