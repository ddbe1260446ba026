"""Customer checkout: create the order, start its T-Bank payment, honour Idempotency-Key.

The order row (and its Idempotency-Key row) are committed first, then Init is called with no
transaction open: a bank call never holds a database lock (nor, with the pool, a database
connection, nor a working slot of the checkout gate: orders/capacity.py), and a failed or lost
Init leaves a NEW order that a repeat of the same request pays again.

An Init whose outcome is unknown (timeout, no readable answer) may have created a payment
whose PaymentURL we never saw. Before any new Init of that order we ask CheckOrder: a payment
we can hand to the customer is reused, a live one we cannot (NEW/FORM_SHOWED, no URL) is
cancelled (Cancel on a NEW payment moves no money), a captured one pays the order through the
one path for bank statuses, and one in the middle of paying stops us. So the customer never
holds two live payment links for one order. Every call is recorded (TBankCall, Payment).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from orders.capacity import bank_wait
from orders.models import (
    IdempotencyKey,
    NotificationSource,
    Order,
    Payment,
    TBankCall,
    TBankCallOutcome,
)
from orders.services.lifecycle import ItemSpec, order_create
from orders.services.notifications import payment_status_apply
from orders.state import OrderStatus
from orders.status import order_status_url
from orders.tbank.client import TBankError, TBankNotConfigured, TBankRefused, TBankUnavailable, tbank_client
from orders.tbank.receipts import ReceiptLine, receipt_build

logger = logging.getLogger(__name__)

# Bank statuses of a payment that can still be paid, and of one being paid right now.
LIVE_STATUSES = frozenset({"NEW", "FORM_SHOWED"})
PAYING_STATUSES = frozenset(
    {"AUTHORIZING", "3DS_CHECKING", "3DS_CHECKED", "PAY_CHECKING", "AUTHORIZED", "CONFIRMING", "CONFIRM_CHECKING"}
)

T = TypeVar("T")


@dataclass(frozen=True)
class CheckoutAnswer:
    """What POST /api/orders answers: an HTTP status and a JSON body."""

    http_status: int
    body: dict[str, Any]


class PaymentUnavailable(Exception):
    """The payment could not be started now; the order stays NEW and a repeat tries again."""


def checkout_request_hash(data: Any) -> str:
    """SHA-256 of a request body in canonical form (key order and spacing do not matter)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def checkout_client_scope(ident: str) -> str:
    """The scope of a client's Idempotency-Keys: SHA-256 of its identity (its address)."""
    return hashlib.sha256(f"client:{ident}".encode()).hexdigest()


def idempotency_key_find(*, key: str, client_scope: str = "") -> IdempotencyKey | None:
    return IdempotencyKey.objects.select_related("order").filter(key=key, client_scope=client_scope).first()


def order_checkout(
    *,
    items: list[ItemSpec],
    email: str,
    language: str = "",
    idempotency_key: str = "",
    request_hash: str = "",
    client_scope: str = "",
) -> CheckoutAnswer:
    """Create a NEW order for validated `items` and start its payment.

    With `idempotency_key`, a repeat (same key, same `request_hash`) gets the first answer, or,
    if the first attempt could not start the payment, tries again on the same order.
    """
    record = None
    try:
        with transaction.atomic():
            order = order_create(items=items, customer_email=email)
            if language:
                Order.objects.filter(pk=order.pk).update(language=language)
                order.language = language
            if idempotency_key:
                record = IdempotencyKey.objects.create(
                    key=idempotency_key, client_scope=client_scope, request_hash=request_hash, order=order
                )
    except IntegrityError:
        if not idempotency_key:
            raise
        # Another request with this key won the race; this one is a repeat of it.
        existing = idempotency_key_find(key=idempotency_key, client_scope=client_scope)
        if existing is None:
            raise
        return order_checkout_repeat(record=existing, request_hash=request_hash)
    return _pay(order, record)


def order_checkout_repeat(*, record: IdempotencyKey, request_hash: str) -> CheckoutAnswer:
    """A request whose Idempotency-Key was seen before."""
    if record.request_hash != request_hash:
        return CheckoutAnswer(
            422,
            {
                "detail": "This Idempotency-Key was already used with a different request body. Send the same "
                "body to repeat that request, or use a new key for a new order.",
                "code": "idempotency_key_reused",
            },
        )
    if record.response_status is not None:
        return CheckoutAnswer(record.response_status, record.response_body)
    return _pay(record.order, record)


def _lease_seconds() -> float:
    # Init, then possibly CheckOrder and Cancel: three bank calls at most, each bounded.
    return 3 * float(settings.TBANK_TIMEOUT_SECONDS) + 10


def _pay(order: Order, record: IdempotencyKey | None) -> CheckoutAnswer:
    if record is not None:
        now = timezone.now()
        stale = now - timedelta(seconds=_lease_seconds())
        claimed = (
            IdempotencyKey.objects.filter(pk=record.pk, response_status__isnull=True)
            .filter(Q(init_started_at__isnull=True) | Q(init_started_at__lt=stale))
            .update(init_started_at=now)
        )
        if not claimed:
            record.refresh_from_db()
            if record.response_status is not None:
                return CheckoutAnswer(record.response_status, record.response_body)
            return CheckoutAnswer(
                409,
                {
                    "detail": "A request with this Idempotency-Key is being processed; repeat it in a few seconds.",
                    "code": "idempotency_key_in_progress",
                },
            )
    try:
        payment = order_payment_start(order=order)
    except PaymentUnavailable as exc:
        if record is not None:
            IdempotencyKey.objects.filter(pk=record.pk).update(init_started_at=None)
        return CheckoutAnswer(
            503,
            {
                "detail": f"The payment could not be started: {exc} Your order {order.public_id} is kept; repeat "
                "the request with the same Idempotency-Key to try again.",
                "code": "payment_unavailable",
            },
        )
    order.refresh_from_db()
    answer = CheckoutAnswer(201, checkout_answer_body(order, payment))
    if record is not None:
        IdempotencyKey.objects.filter(pk=record.pk).update(
            response_status=answer.http_status, response_body=answer.body, init_started_at=None
        )
    return answer


def checkout_answer_body(order: Order, payment: Payment | None) -> dict[str, Any]:
    return {
        "id": order.public_id,
        "status": order.status,
        "amount": order.amount_kopecks,
        "payment_url": payment.payment_url if payment else "",
        "status_url": order_status_url(order),
        "access_token": order.access_token,
        "expires_at": payment.expires_at.isoformat() if payment and payment.expires_at else None,
    }


# --- starting the payment ---------------------------------------------------------------------


def _recorded_call(
    order: Order, method: str, request: dict[str, Any], call: Callable[[], T], *, record: TBankCall | None = None
) -> T:
    """Run one bank call and leave its audit record, whatever the outcome. With `record` (a call
    recorded as started before it left), that record is completed instead of a new one made."""

    def write(**fields) -> None:
        if record is None:
            TBankCall.objects.create(order=order, method=method, request=request, **fields)
        else:
            TBankCall.objects.filter(pk=record.pk).update(**fields)

    try:
        # The wait (up to TBANK_TIMEOUT_SECONDS) holds no database connection and no working slot.
        with bank_wait():
            result = call()
    except TBankNotConfigured as exc:
        logger.error("T-Bank is not configured: %s", exc, extra={"order": order.public_id})
        if record is not None:  # nothing left: the started record must not read as unknown
            write(outcome=TBankCallOutcome.REFUSED, error=str(exc))
        raise PaymentUnavailable("payments are not configured on this shop.") from exc
    except TBankRefused as exc:
        write(outcome=TBankCallOutcome.REFUSED, error=str(exc), answer=exc.answer)
        raise
    except TBankUnavailable as exc:
        write(outcome=TBankCallOutcome.UNKNOWN, error=str(exc))
        raise
    raw = getattr(result, "raw", None)
    if raw is None and isinstance(result, list):
        raw = {"Payments": [state.raw for state in result]}
    write(
        outcome=TBankCallOutcome.OK,
        error="",
        payment_id=str(getattr(result, "payment_id", "") or ""),
        answer=raw or {},
    )
    return result


def redirect_due_date(now=None) -> tuple[str, Any]:
    """RedirectDueDate in the bank's format (2016-08-31T12:28:00+03:00) and as a datetime."""
    due = (now or timezone.now()) + timedelta(minutes=settings.TBANK_PAYMENT_TTL_MINUTES)
    due = due.replace(microsecond=0)
    return due.isoformat(timespec="seconds"), due


def init_request(order: Order) -> dict[str, Any]:
    """The keyword arguments of TBankClient.init for `order`."""
    items = list(order.items.select_related("product").order_by("id"))
    description = f"Order {order.public_id}: " + ", ".join(f"{item.product.name} x{item.quantity}" for item in items)
    due_text, _ = redirect_due_date()
    status_url = order_status_url(order)
    request: dict[str, Any] = {
        "amount": order.amount_kopecks,
        "order_id": order.public_id,
        "description": description[:140],
        "notification_url": settings.PUBLIC_BASE_URL + reverse("tbank-notification"),
        "success_url": status_url,
        "fail_url": status_url,
        "redirect_due_date": due_text,
        "language": "en" if order.language.startswith("en") else "ru",
        "data": {"Email": order.customer_email[:100]} if order.customer_email else None,
        "receipt": None,
    }
    if settings.TBANK_RECEIPT_ENABLED:
        request["receipt"] = receipt_build(
            lines=[
                ReceiptLine(name=item.product.name, price=item.unit_price_kopecks, quantity=item.quantity)
                for item in items
            ],
            email=order.customer_email,
            taxation=settings.TBANK_RECEIPT_TAXATION,
            tax=settings.TBANK_RECEIPT_TAX,
            payment_method=settings.TBANK_RECEIPT_PAYMENT_METHOD,
            payment_object=settings.TBANK_RECEIPT_PAYMENT_OBJECT,
        )
    return request


def _audit_request(request: dict[str, Any]) -> dict[str, Any]:
    # Links carry the customer's access token: keep them out of the audit record.
    return {
        key: ("(status page link)" if key in ("success_url", "fail_url") else value) for key, value in request.items()
    }


def _reusable_payment(order: Order) -> Payment | None:
    now = timezone.now()
    return (
        order.payments.exclude(payment_url="")
        .filter(Q(bank_status="") | Q(bank_status__in=LIVE_STATUSES))
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("-id")
        .first()
    )


def order_payment_start(*, order: Order) -> Payment:
    """A live payment for NEW `order`: the one it has, or a new one from Init.

    Raises PaymentUnavailable (with the reason for the customer) when none can be had now.
    """
    order.refresh_from_db()
    if order.status != OrderStatus.NEW:
        payment = order.payments.order_by("-id").first()
        if order.status in (OrderStatus.PAID, OrderStatus.FULFILLED):
            return payment
        raise PaymentUnavailable(f"the order is {order.status} and cannot be paid any more; place a new order.")
    existing = _reusable_payment(order)
    if existing is not None:
        return existing
    client = _client()
    _settle_unknown_init(order, client)
    order.refresh_from_db()
    if order.status != OrderStatus.NEW:  # CheckOrder found it captured
        return order_payment_start(order=order)
    existing = _reusable_payment(order)
    if existing is not None:
        return existing

    return _payment_init(order, client)


def order_payment_again(*, order_id: int) -> Payment:
    """A payment link for the customer of a CANCELLED order (payment declined, link expired): nothing
    was charged, so the same order may be paid again. Idempotent: a live link the order already has
    is handed back rather than a second one made. A payment captured later moves the order to PAID
    by the usual path (CANCELLED -> PAID is legal), so the order is never paid and lost.

    Raises PaymentUnavailable (the reason, for the customer) for an order that is paid, refunded, or
    whose payment cannot be started now; a NEW order gets its usual link (order_payment_start).
    """
    order = Order.objects.get(pk=order_id)
    if order.status != OrderStatus.CANCELLED:
        return order_payment_start(order=order)
    existing = _link_made_since_cancelled(order)
    if existing is not None:
        return existing
    client = _client()
    _settle_unknown_init(order, client)
    order.refresh_from_db()
    if order.status != OrderStatus.CANCELLED:  # CheckOrder found a captured payment
        return order_payment_start(order=order)
    return _link_made_since_cancelled(order) or _payment_init(order, client)


def _link_made_since_cancelled(order: Order) -> Payment | None:
    # The payment that was declined may still read NEW here (a failure status is not written on
    # the Payment row): only a link made after the order was cancelled is a live one.
    payment = _reusable_payment(order)
    if payment is None or (order.cancelled_at and payment.created_at <= order.cancelled_at):
        return None
    return payment


def _payment_init(order: Order, client) -> Payment:
    """Init a new payment of `order` and record it."""
    request = init_request(order)
    # The expiry we keep is the one the bank was sent (computing it again could be a second later).
    due = datetime.fromisoformat(request["redirect_due_date"])
    # "Init started" is committed before the call leaves: a request that takes over after this one
    # outlived its lease (or died mid-call) finds an Init of unknown outcome and asks CheckOrder
    # first, cancelling a payment whose link nobody got, so only one link is ever live.
    started = TBankCall.objects.create(
        order=order,
        method="Init",
        outcome=TBankCallOutcome.UNKNOWN,
        error="Sent; no answer yet.",
        request=_audit_request(request),
    )
    try:
        answer = _recorded_call(order, "Init", _audit_request(request), lambda: client.init(**request), record=started)
    except TBankRefused as exc:
        raise PaymentUnavailable(f"the bank refused to create the payment ({exc}).") from exc
    except TBankUnavailable as exc:
        raise PaymentUnavailable(f"the bank did not answer in time ({exc}).") from exc
    if Payment.objects.filter(payment_id=answer.payment_id, bank_status="CANCELED").exists():
        # A request that took over while this Init was out found it with CheckOrder and cancelled
        # its link (nobody had it yet): answer with the link that request started.
        live = _reusable_payment(order)
        if live is not None:
            return live
        raise PaymentUnavailable("the payment was restarted by another request; repeat the request.")
    payment, _ = Payment.objects.update_or_create(
        payment_id=answer.payment_id,
        defaults={
            "order": order,
            "amount_kopecks": answer.amount if answer.amount is not None else order.amount_kopecks,
            "payment_url": answer.payment_url,
            "bank_status": answer.status or "NEW",
            "expires_at": due,
        },
    )
    return payment


def _client():
    try:
        return tbank_client()
    except TBankNotConfigured as exc:
        logger.error("T-Bank is not configured: %s", exc)
        raise PaymentUnavailable("payments are not configured on this shop.") from exc


def _settle_unknown_init(order: Order, client) -> None:
    """After an Init with an unknown outcome, find out with CheckOrder what the bank holds."""
    unknown = (
        TBankCall.objects.filter(order=order, method="Init", outcome=TBankCallOutcome.UNKNOWN).order_by("-id").first()
    )
    if unknown is None:
        return
    if TBankCall.objects.filter(
        order=order, method="CheckOrder", outcome=TBankCallOutcome.OK, id__gt=unknown.id
    ).exists():
        return  # already settled, and every Init since then had a readable answer
    # CheckOrder can only show a payment the bank has registered: asked while that Init may still
    # be on its way (or being processed), it would find nothing, and a new Init would leave two
    # live links. So the earlier Init is given TBANK_INIT_SETTLE_SECONDS before it is judged.
    settle = timedelta(seconds=settings.TBANK_INIT_SETTLE_SECONDS)
    age = timezone.now() - unknown.created_at
    if age < settle:
        wait = max(1, math.ceil((settle - age).total_seconds()))
        raise PaymentUnavailable(
            f"an earlier payment attempt for this order started {int(age.total_seconds())} s ago and the bank may "
            f"still be registering it; nothing new was started. Repeat the request in {wait} s."
        )
    try:
        states = _recorded_call(
            order, "CheckOrder", {"order_id": order.public_id}, lambda: client.check_order(order_id=order.public_id)
        )
    except TBankError as exc:
        raise PaymentUnavailable(
            f"an earlier payment attempt could not be verified with the bank ({exc}); nothing new was started."
        ) from exc
    for state in states:
        if not state.payment_id:
            continue
        payment, created = Payment.objects.get_or_create(
            payment_id=state.payment_id,
            defaults={
                "order": order,
                "amount_kopecks": state.amount or order.amount_kopecks,
                "bank_status": state.status,
            },
        )
        if payment.order_id != order.pk:
            logger.error(
                "CheckOrder of order %s listed PaymentId %s of another order",
                order.pk,
                state.payment_id,
                extra={"order": order.public_id},
            )
            continue
        if not created and payment.bank_status != state.status:
            Payment.objects.filter(pk=payment.pk).update(bank_status=state.status, updated_at=timezone.now())
        if state.status in LIVE_STATUSES and not payment.payment_url:
            _cancel_unreachable(order, client, payment)
        elif state.status == "CONFIRMED":
            _apply_found_status(order, state)
        elif state.status in PAYING_STATUSES:
            raise PaymentUnavailable(
                "a payment for this order is being processed by the bank; check the order status in a minute."
            )


def _cancel_unreachable(order: Order, client, payment: Payment) -> None:
    """Cancel a live payment whose link the customer never got, so only one link is ever live."""
    try:
        answer = _recorded_call(
            order,
            "Cancel",
            {"payment_id": payment.payment_id},
            lambda: client.cancel(payment_id=payment.payment_id),
        )
    except TBankError as exc:
        raise PaymentUnavailable(
            f"an earlier payment (PaymentId {payment.payment_id}) could not be cancelled ({exc}); nothing new "
            "was started."
        ) from exc
    Payment.objects.filter(pk=payment.pk).update(bank_status=answer.status or "CANCELED", updated_at=timezone.now())
    logger.info(
        "Order %s: cancelled PaymentId %s left by an unanswered Init",
        order.pk,
        payment.payment_id,
        extra={"order": order.public_id},
    )


def _apply_found_status(order: Order, state) -> None:
    payload = {
        "TerminalKey": settings.TBANK_TERMINAL_KEY,
        "OrderId": order.public_id,
        "Success": True,
        "Status": state.status,
        "PaymentId": state.payment_id,
        "Amount": state.amount,
    }
    with transaction.atomic():
        locked = Order.objects.select_for_update(no_key=True).get(pk=order.pk)
        payment_status_apply(
            order=locked, payload=payload, body=json.dumps(state.raw).encode(), source=NotificationSource.POLLING
        )
