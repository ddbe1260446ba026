"""The T-Bank webhook, POST /api/payments/tbank/notification: every bank status, every answer,
and the audit record each notification leaves."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.conf import settings
from django.db import OperationalError

from fulfillment.models import Delivery, DeliveryStatus, MockLedgerEntry
from fulfillment.services import fulfill_order
from fulfillment.tasks import deliver_order
from orders import signals
from orders.models import NotificationVerdict, Order, PaymentNotification, Refund, RefundReason
from orders.services.notifications import REJECTED_PREFIX_CHARS
from orders.state import OrderStatus, order_transition
from orders.tbank import sign_notification
from tests.conftest import WEBHOOK_URL, delivered_per_unit, notification

FAILED_PAYMENT = ["REJECTED", "CANCELED", "DEADLINE_EXPIRED", "ATTEMPTS_EXPIRED", "AUTH_FAIL"]
MONEY_RETURNED = ["REFUNDED", "REVERSED"]


def assert_ok(response) -> None:
    assert response.status_code == 200, response.content
    assert response.content == b"OK"
    assert response["Content-Type"] == "text/plain; charset=utf-8"


def status_of(order: Order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


def last_record() -> PaymentNotification:
    return PaymentNotification.objects.latest("id")


@pytest.fixture
def paid_signals():
    received = []

    def receiver(sender, order_id, **kwargs):
        received.append(order_id)

    signals.order_paid.connect(receiver)
    yield received
    signals.order_paid.disconnect(receiver)


# --- CONFIRMED -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_confirmed_pays_and_delivers_after_commit(order_factory, post_notification):
    # transaction=True: the delivery task really runs from on_commit, eagerly, after the
    # webhook's transaction commits.
    order = order_factory(quantities=(1, 3))

    response = post_notification(notification(order))

    assert_ok(response)
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert order.payment_id == "8742591"
    assert order.paid_at is not None and order.fulfilled_at is not None
    assert Delivery.objects.filter(order=order, status=DeliveryStatus.DELIVERED).count() == 4
    assert sorted(delivered_per_unit().values()) == [1, 1, 1, 1]
    record = last_record()
    assert (record.verdict, record.http_status, record.order_id) == (NotificationVerdict.APPLIED, 200, order.pk)


def test_confirmed_queues_delivery_once_the_transaction_commits(
    order_factory, post_notification, queued_deliveries, django_capture_on_commit_callbacks
):
    order = order_factory(quantities=(2,))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_notification(notification(order))
        assert queued_deliveries == []  # nothing is queued before the commit

    assert_ok(response)
    assert status_of(order) == OrderStatus.PAID
    # The units exist from the moment the order is paid, in the same transaction.
    assert list(Delivery.objects.filter(order=order).values_list("status", flat=True)) == ["waiting", "waiting"]
    for callback in callbacks:
        callback()
    assert queued_deliveries == [order.pk]


def test_confirmed_runs_the_eager_delivery_task(order_factory, post_notification, django_capture_on_commit_callbacks):
    order = order_factory(quantities=(1, 1))

    with django_capture_on_commit_callbacks(execute=True):
        response = post_notification(notification(order))

    assert_ok(response)
    assert status_of(order) == OrderStatus.FULFILLED
    assert len(delivered_per_unit()) == 2


def test_duplicate_confirmed_changes_nothing_twice(
    order_factory, post_notification, queued_deliveries, django_capture_on_commit_callbacks, paid_signals
):
    order = order_factory()

    with django_capture_on_commit_callbacks(execute=True):
        first = post_notification(notification(order))
    paid = Order.objects.get(pk=order.pk)
    with django_capture_on_commit_callbacks(execute=True):
        second = post_notification(notification(order))
        third = post_notification(notification(order))

    for response in (first, second, third):
        assert_ok(response)
    again = Order.objects.get(pk=order.pk)
    assert (again.status, again.paid_at, again.status_changed_at) == (
        OrderStatus.PAID,
        paid.paid_at,
        paid.status_changed_at,
    )
    assert paid_signals == [order.pk]
    assert queued_deliveries == [order.pk]
    assert Delivery.objects.filter(order=order).count() == 1
    verdicts = list(PaymentNotification.objects.order_by("id").values_list("verdict", flat=True))
    assert verdicts == [NotificationVerdict.APPLIED, NotificationVerdict.DUPLICATE, NotificationVerdict.DUPLICATE]


def test_confirmed_on_a_fulfilled_order_is_a_duplicate(order_factory, post_notification):
    order = order_factory()
    order_transition(order_id=order.pk, target=OrderStatus.PAID)
    order_transition(order_id=order.pk, target=OrderStatus.FULFILLED)

    assert_ok(post_notification(notification(order)))

    assert status_of(order) == OrderStatus.FULFILLED
    assert last_record().verdict == NotificationVerdict.DUPLICATE


def test_confirmed_after_cancelled_pays_the_order(order_factory, post_notification, queued_deliveries):
    # orders/state.py: the bank is the source of truth for money; a late capture is not lost.
    order = order_factory()
    assert_ok(post_notification(notification(order, status="DEADLINE_EXPIRED")))
    assert status_of(order) == OrderStatus.CANCELLED

    assert_ok(post_notification(notification(order)))

    order.refresh_from_db()
    assert (order.status, order.payment_id) == (OrderStatus.PAID, "8742591")
    assert order.cancelled_at is not None and order.paid_at is not None
    assert Delivery.objects.filter(order=order, status=DeliveryStatus.WAITING).count() == 1
    assert "cancelled -> paid" in last_record().detail


def test_confirmed_on_a_refunded_order_does_not_pay_again(paid_order_factory, post_notification, paid_signals):
    order = paid_order_factory()
    assert_ok(post_notification(notification(order, status="REFUNDED")))
    paid_signals.clear()

    assert_ok(post_notification(notification(order)))

    assert status_of(order) == OrderStatus.REFUNDED
    assert last_record().verdict == NotificationVerdict.IGNORED
    assert paid_signals == []


def test_confirmed_with_success_false_changes_nothing(order_factory, post_notification):
    order = order_factory()
    assert_ok(post_notification(notification(order, Success=False)))
    assert status_of(order) == OrderStatus.NEW
    assert last_record().verdict == NotificationVerdict.RECORDED


def test_the_order_is_found_by_its_public_id_not_its_pk(order_factory, post_notification):
    order = order_factory()
    response = post_notification(notification(order, OrderId=order.pk))
    assert response.status_code == 404
    assert status_of(order) == OrderStatus.NEW
    assert_ok(post_notification(notification(order)))
    assert status_of(order) == OrderStatus.PAID


def test_an_order_from_before_public_ids_keeps_its_pk_as_order_id(order_factory, post_notification):
    # The migration gave orders that already had payments their pk as public id.
    order = order_factory()
    Order.objects.filter(pk=order.pk).update(public_id=str(order.pk))
    assert_ok(post_notification(notification(order, OrderId=order.pk)))
    assert status_of(order) == OrderStatus.PAID


# --- AUTHORIZED ------------------------------------------------------------------------------


def test_authorized_is_recorded_and_changes_nothing(order_factory, post_notification):
    order = order_factory()
    assert_ok(post_notification(notification(order, status="AUTHORIZED")))
    assert status_of(order) == OrderStatus.NEW
    record = last_record()
    assert (record.verdict, record.bank_status, record.order_id) == (
        NotificationVerdict.RECORDED,
        "AUTHORIZED",
        order.pk,
    )


@pytest.mark.parametrize("status", [OrderStatus.PAID, OrderStatus.FULFILLED])
def test_authorized_after_confirmed_never_downgrades(order_factory, post_notification, status):
    order = order_factory()
    assert_ok(post_notification(notification(order)))
    if status == OrderStatus.FULFILLED:
        order_transition(order_id=order.pk, target=OrderStatus.FULFILLED)

    assert_ok(post_notification(notification(order, status="AUTHORIZED")))

    assert status_of(order) == status
    assert last_record().verdict == NotificationVerdict.RECORDED


# --- failed payments -------------------------------------------------------------------------


@pytest.mark.parametrize("bank_status", FAILED_PAYMENT + ["REVERSED"])
def test_failed_payment_cancels_a_new_order(order_factory, post_notification, bank_status):
    order = order_factory()

    assert_ok(post_notification(notification(order, status=bank_status, Success=False)))

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED and order.cancelled_at is not None
    assert last_record().verdict == NotificationVerdict.APPLIED
    assert not Delivery.objects.filter(order=order).exists()


@pytest.mark.parametrize("bank_status", FAILED_PAYMENT)
def test_failed_payment_on_a_cancelled_order_is_a_duplicate(order_factory, post_notification, bank_status):
    order = order_factory()
    assert_ok(post_notification(notification(order, status=bank_status, Success=False)))
    assert_ok(post_notification(notification(order, status=bank_status, Success=False)))
    assert status_of(order) == OrderStatus.CANCELLED
    assert last_record().verdict == NotificationVerdict.DUPLICATE


@pytest.mark.parametrize("bank_status", FAILED_PAYMENT)
@pytest.mark.parametrize("status", [OrderStatus.PAID, OrderStatus.FULFILLED])
def test_late_failed_payment_on_a_paid_order_is_ignored(order_factory, post_notification, bank_status, status):
    order = order_factory()
    assert_ok(post_notification(notification(order)))
    if status == OrderStatus.FULFILLED:
        order_transition(order_id=order.pk, target=OrderStatus.FULFILLED)

    assert_ok(post_notification(notification(order, status=bank_status, Success=False)))

    assert status_of(order) == status
    record = last_record()
    assert record.verdict == NotificationVerdict.IGNORED
    assert f"{bank_status} cannot downgrade an order that is {status}" in record.detail


# --- refunds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bank_status", MONEY_RETURNED)
def test_money_returned_on_a_paid_order_refunds_and_stops_delivery(paid_order_factory, post_notification, bank_status):
    order = paid_order_factory(quantities=(2, 1))
    assert Delivery.objects.filter(order=order, status=DeliveryStatus.WAITING).count() == 3

    assert_ok(post_notification(notification(order, status=bank_status)))

    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED and order.refunded_at is not None
    assert Delivery.objects.filter(order=order, status=DeliveryStatus.CANCELLED).count() == 3
    assert last_record().verdict == NotificationVerdict.APPLIED
    # The delivery task that was queued when the order was paid now finds nothing to do.
    result = deliver_order.delay(order.pk).get()
    assert (result["delivered"], result["status"]) == (0, OrderStatus.REFUNDED)
    assert not MockLedgerEntry.objects.exists()


def test_refund_keeps_delivered_units_and_cancels_the_rest(paid_order_factory, post_notification):
    order = paid_order_factory(quantities=(1, 1))
    first_item, second_item = order.items.all()
    fulfill_order(order.pk, items=[first_item])
    assert status_of(order) == OrderStatus.PAID

    assert_ok(post_notification(notification(order, status="REFUNDED")))

    statuses = dict(Delivery.objects.filter(order=order).values_list("item_id", "status"))
    assert statuses == {first_item.pk: DeliveryStatus.DELIVERED, second_item.pk: DeliveryStatus.CANCELLED}
    assert set(delivered_per_unit()) == {f"{order.pk}-{first_item.pk}-0"}


def test_refund_leaves_a_unit_already_sent_to_resolve(paid_order_factory, post_notification):
    # A SENDING unit may have been bought: it is not cancelled, its outcome is still awaited.
    order = paid_order_factory(quantities=(2,))
    sending, waiting = Delivery.objects.filter(order=order)
    Delivery.objects.filter(pk=sending.pk).update(status=DeliveryStatus.SENDING)

    assert_ok(post_notification(notification(order, status="REFUNDED")))

    assert Delivery.objects.get(pk=sending.pk).status == DeliveryStatus.SENDING
    assert Delivery.objects.get(pk=waiting.pk).status == DeliveryStatus.CANCELLED


def test_refund_of_a_fulfilled_order(order_factory, post_notification, django_capture_on_commit_callbacks):
    order = order_factory()
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(post_notification(notification(order)))
    assert status_of(order) == OrderStatus.FULFILLED

    assert_ok(post_notification(notification(order, status="REFUNDED")))

    assert status_of(order) == OrderStatus.REFUNDED
    assert Delivery.objects.get(order=order).status == DeliveryStatus.DELIVERED


def test_refund_for_a_different_payment_id_is_ignored(paid_order_factory, post_notification):
    order = paid_order_factory(payment_id="8742591")

    assert_ok(post_notification(notification(order, status="REFUNDED", PaymentId=1111111)))

    assert status_of(order) == OrderStatus.PAID
    assert Delivery.objects.get(order=order).status == DeliveryStatus.WAITING
    record = last_record()
    assert record.verdict == NotificationVerdict.IGNORED
    assert "PaymentId 1111111" in record.detail and "8742591" in record.detail


def test_duplicate_refund_refunds_once(paid_order_factory, post_notification):
    order = paid_order_factory()
    assert_ok(post_notification(notification(order, status="REFUNDED")))
    refunded_at = Order.objects.get(pk=order.pk).refunded_at

    assert_ok(post_notification(notification(order, status="REFUNDED")))

    assert Order.objects.get(pk=order.pk).refunded_at == refunded_at
    assert last_record().verdict == NotificationVerdict.DUPLICATE


@pytest.mark.parametrize("bank_status", ["REFUNDED", "REVERSED"])
def test_money_returned_before_confirmation_cancels_a_new_order(order_factory, post_notification, bank_status):
    order = order_factory()
    assert_ok(post_notification(notification(order, status=bank_status)))
    assert status_of(order) == OrderStatus.CANCELLED
    assert last_record().verdict == NotificationVerdict.APPLIED


def test_refund_of_a_cancelled_order_is_ignored(order_factory, post_notification):
    order = order_factory()
    order_transition(order_id=order.pk, target=OrderStatus.CANCELLED)
    assert_ok(post_notification(notification(order, status="REFUNDED")))
    assert status_of(order) == OrderStatus.CANCELLED
    assert last_record().verdict == NotificationVerdict.IGNORED


def test_confirmed_retried_after_its_refund_pays_and_refunds_without_delivering(
    order_factory, post_notification, django_capture_on_commit_callbacks
):
    # CONFIRMED was answered non-OK (say the database was down), the bank refunded, then retried.
    order = order_factory(quantities=(2,))
    assert_ok(post_notification(notification(order, status="REFUNDED")))
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(post_notification(notification(order)))
    order.refresh_from_db()
    assert order.status == OrderStatus.REFUNDED
    assert order.paid_at is not None and order.refunded_at is not None
    assert set(Delivery.objects.filter(order=order).values_list("status", flat=True)) == {DeliveryStatus.CANCELLED}
    assert delivered_per_unit() == {}
    assert "refunded before this CONFIRMED" in last_record().detail


def test_forged_refund_does_not_block_a_later_payment(
    order_factory, post_notification, queued_deliveries, django_capture_on_commit_callbacks
):
    order = order_factory()
    forged = notification(order, status="REFUNDED", password="not-the-terminal-password")
    assert post_notification(forged).status_code == 403
    order_transition(order_id=order.pk, target=OrderStatus.CANCELLED)
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(post_notification(notification(order)))
    assert status_of(order) == OrderStatus.PAID
    assert queued_deliveries == [order.pk]


@pytest.mark.parametrize(
    ("bank_status", "verdict"),
    [
        # Part of the money went back: a person decides what that means for the goods.
        ("PARTIAL_REFUNDED", NotificationVerdict.NEEDS_REVIEW),
        ("PARTIAL_REVERSED", NotificationVerdict.NEEDS_REVIEW),
        ("3DS_CHECKING", NotificationVerdict.RECORDED),
        ("SOMETHING_NEW", NotificationVerdict.RECORDED),
    ],
)
def test_other_statuses_are_recorded_without_action(paid_order_factory, post_notification, bank_status, verdict):
    order = paid_order_factory()
    assert_ok(post_notification(notification(order, status=bank_status)))
    assert status_of(order) == OrderStatus.PAID
    assert Delivery.objects.get(order=order).status == DeliveryStatus.WAITING
    assert last_record().verdict == verdict


def test_second_captured_payment_is_refunded_in_full_automatically(
    paid_order_factory, post_notification, queued_deliveries
):
    order = paid_order_factory(payment_id="8742591")
    assert_ok(post_notification(notification(order, PaymentId=9999001)))
    assert status_of(order) == OrderStatus.PAID
    record = last_record()
    # It used to be flagged for review ("refund one in the T-Bank portal"); it is now refunded.
    assert record.verdict == NotificationVerdict.APPLIED
    assert "9999001" in record.detail and "8742591" in record.detail and "Refund" in record.detail
    refund = Refund.objects.get(order=order)
    assert (refund.payment.payment_id, refund.amount_kopecks, refund.reason, refund.full) == (
        "9999001",
        order.amount_kopecks,
        RefundReason.DOUBLE_PAYMENT,
        True,
    )
    assert queued_deliveries == []  # nothing delivered again


def test_stored_body_keeps_the_bank_text_except_the_token(order_factory, client):
    order = order_factory()
    signed = notification(order)
    body = json.dumps(signed, indent=1).replace('"Amount": ', '"Amount":   ')
    response = client.post(WEBHOOK_URL, data=body, content_type="application/json")
    assert_ok(response)
    assert last_record().raw_body == body.replace(signed["Token"], "***")
    assert signed["Token"] not in last_record().raw_body


def test_invalid_allowed_network_refuses_with_the_entry_named(order_factory, post_notification, settings):
    settings.TBANK_ALLOWED_NETWORKS = ["91.194.226.0/23", "not-a-network"]
    order = order_factory()
    response = post_notification(notification(order))
    assert response.status_code == 503
    assert status_of(order) == OrderStatus.NEW
    from django.core import checks

    errors = [message for message in checks.run_checks() if message.id == "orders.E001"]
    assert errors and "not-a-network" in errors[0].msg


# --- refusals --------------------------------------------------------------------------------


def test_bad_token_is_forbidden(order_factory, post_notification):
    order = order_factory()
    payload = notification(order)
    payload["Token"] = "0" * 64

    response = post_notification(payload)

    assert (response.status_code, response.content) == (403, b"Token does not match.")
    assert status_of(order) == OrderStatus.NEW
    assert last_record().verdict == NotificationVerdict.FORBIDDEN


def test_token_signed_with_another_password_is_forbidden(order_factory, post_notification):
    order = order_factory()
    response = post_notification(notification(order, password="guessed-password"))
    assert response.status_code == 403
    assert status_of(order) == OrderStatus.NEW


def test_tampered_amount_is_forbidden(order_factory, post_notification):
    order = order_factory(price=10000)
    payload = notification(order, amount=1)
    payload["Amount"] = 10000  # the signature covered 1

    assert post_notification(payload).status_code == 403
    assert status_of(order) == OrderStatus.NEW


def test_wrong_terminal_key_is_forbidden(order_factory, post_notification):
    order = order_factory()
    # Correctly signed with our password, but for another terminal.
    response = post_notification(notification(order, TerminalKey="SomeoneElsesTerminal"))
    assert (response.status_code, response.content) == (403, b"Unknown TerminalKey.")
    assert status_of(order) == OrderStatus.NEW
    assert last_record().verdict == NotificationVerdict.FORBIDDEN


def test_source_outside_the_allowed_networks_is_forbidden(order_factory, client, settings):
    settings.TBANK_ALLOWED_NETWORKS = ["91.194.226.0/23"]
    order = order_factory()
    body = json.dumps(notification(order))

    refused = client.post(WEBHOOK_URL, data=body, content_type="application/json", REMOTE_ADDR="10.0.0.1")
    assert refused.status_code == 403
    assert status_of(order) == OrderStatus.NEW

    accepted = client.post(WEBHOOK_URL, data=body, content_type="application/json", REMOTE_ADDR="91.194.227.9")
    assert_ok(accepted)
    assert status_of(order) == OrderStatus.PAID
    assert last_record().remote_addr == "91.194.227.9"


def test_forwarded_address_is_used_only_when_trusted(order_factory, client, settings):
    settings.TBANK_ALLOWED_NETWORKS = ["91.194.226.0/23"]
    order = order_factory()
    body = json.dumps(notification(order))
    # Our proxy appends the address it saw; anything before it is whatever the client wrote.
    forwarded = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "10.9.9.9, 91.194.226.1"}

    assert client.post(WEBHOOK_URL, data=body, content_type="application/json", **forwarded).status_code == 403
    settings.TBANK_TRUST_X_FORWARDED_FOR = True
    assert_ok(client.post(WEBHOOK_URL, data=body, content_type="application/json", **forwarded))


def test_client_written_forwarded_entries_cannot_fake_a_bank_address(order_factory, client, settings):
    settings.TBANK_ALLOWED_NETWORKS = ["91.194.226.0/23"]
    settings.TBANK_TRUST_X_FORWARDED_FOR = True
    order = order_factory()
    spoofed = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "91.194.226.1, 203.0.113.5"}
    body = json.dumps(notification(order))
    assert client.post(WEBHOOK_URL, data=body, content_type="application/json", **spoofed).status_code == 403
    assert status_of(order) == OrderStatus.NEW


MALFORMED_BODIES = {
    "not-json": (b"TerminalKey=x&Status=CONFIRMED", "not valid JSON"),
    "not-utf8": (b"\xff\xfe\x00", "not valid UTF-8"),
    "empty": (b"", "not valid JSON"),
    "array": (b"[]", "must be a JSON object"),
    "string": (b'"OK"', "must be a JSON object"),
    "missing-token": ({"Token": None}, "Token is missing"),
    "missing-status": ({"Status": None}, "Status is missing"),
    "missing-order-id": ({"OrderId": None}, "OrderId is missing"),
    "terminal-key-number": ({"TerminalKey": 123}, "TerminalKey must be a string"),
    "order-id-bool": ({"OrderId": True}, "OrderId must be a string or an integer"),
}


@pytest.mark.parametrize("case", MALFORMED_BODIES)
def test_malformed_body_is_a_bad_request(order_factory, post_notification, case):
    order = order_factory()
    body, message = MALFORMED_BODIES[case]
    if isinstance(body, dict):
        payload = notification(order)
        for key, value in body.items():
            if value is None:
                del payload[key]
            else:
                payload[key] = value
        body = json.dumps(payload).encode()

    response = post_notification(body)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert status_of(order) == OrderStatus.NEW
    record = last_record()
    assert (record.verdict, record.http_status) == (NotificationVerdict.MALFORMED, 400)
    assert message in record.detail


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Amount": "10000"}, "Amount must be a non-negative integer"),
        ({"Amount": -1}, "Amount must be a non-negative integer"),
        ({"Amount": True}, "Amount must be a non-negative integer"),
        ({"PaymentId": {"id": 1}}, "PaymentId must be a string or an integer"),
        ({"PaymentId": False}, "PaymentId must be a string or an integer"),
    ],
)
def test_correctly_signed_fields_of_the_wrong_type_are_a_bad_request(order_factory, post_notification, fields, message):
    order = order_factory()
    response = post_notification(notification(order, **fields))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert status_of(order) == OrderStatus.NEW
    assert last_record().verdict == NotificationVerdict.MALFORMED


def test_fractional_amount_is_a_bad_request(order_factory, post_notification):
    order = order_factory(price=10000)
    # Signed over the literal "10000.0" exactly as sent, so the token is valid; it is still not kopecks.
    body = json.dumps(notification(order, Amount="10000.0")).replace('"10000.0"', "10000.0")

    response = post_notification(body)

    assert response.status_code == 400
    assert "Amount must be a non-negative integer" in response.content.decode()
    assert status_of(order) == OrderStatus.NEW


def test_confirmed_without_amount_is_a_bad_request(order_factory, post_notification):
    order = order_factory()
    payload = notification(order)
    del payload["Amount"]

    response = post_notification(sign_notification(payload, settings.TBANK_PASSWORD))

    assert response.status_code == 400
    assert b"CONFIRMED notification must carry Amount" in response.content
    assert status_of(order) == OrderStatus.NEW


@pytest.mark.parametrize("order_ref", ["999999", "abc", "12345678901234567890123", "-1", "１２"])
def test_unknown_order_id_is_not_found(db, post_notification, order_ref):
    payload = notification(Order(pk=1, amount_kopecks=100), OrderId=order_ref)

    response = post_notification(payload)

    assert response.status_code == 404
    assert f"No order with OrderId {order_ref!r}" in response.content.decode()
    record = last_record()
    assert (record.verdict, record.order_id, record.order_ref) == (NotificationVerdict.UNKNOWN_ORDER, None, order_ref)


def test_amount_mismatch_is_a_conflict_and_the_order_is_not_paid(order_factory, post_notification, paid_signals):
    order = order_factory(price=10000)

    response = post_notification(notification(order, amount=9999))

    assert response.status_code == 409
    assert f"Amount 9999 does not match order {order.pk} amount 10000" in response.content.decode()
    assert status_of(order) == OrderStatus.NEW
    assert paid_signals == []
    assert not Delivery.objects.filter(order=order).exists()
    record = last_record()
    assert (record.verdict, record.http_status, record.amount_kopecks, record.order_id) == (
        NotificationVerdict.AMOUNT_MISMATCH,
        409,
        9999,
        order.pk,
    )


@pytest.mark.parametrize("missing", ["TBANK_TERMINAL_KEY", "TBANK_PASSWORD"])
def test_unconfigured_credentials_answer_503(order_factory, post_notification, settings, missing):
    order = order_factory()
    payload = notification(order)
    setattr(settings, missing, "")

    response = post_notification(payload)

    assert response.status_code == 503
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert b"not configured" in response.content
    assert status_of(order) == OrderStatus.NEW
    assert not PaymentNotification.objects.exists()


# The payment itself, and the Payment upsert after the order was already updated.
@pytest.mark.parametrize("failing", ["order_mark_paid_if_new", "_payment_captured"])
def test_database_error_answers_503_and_keeps_nothing(order_factory, post_notification, monkeypatch, failing):
    order = order_factory()

    def broken(*args, **kwargs):
        raise OperationalError("database went away")

    monkeypatch.setattr(f"orders.services.notifications.{failing}", broken)
    response = post_notification(notification(order))

    assert response.status_code == 503
    assert b"retry" in response.content
    assert status_of(order) == OrderStatus.NEW
    # The record shares the transaction with the change: neither was kept, the bank retries.
    assert not PaymentNotification.objects.exists()


def test_only_post_is_allowed(client, db):
    assert client.get(WEBHOOK_URL).status_code == 405
    assert not PaymentNotification.objects.exists()


# --- the audit record ------------------------------------------------------------------------


def _bad_token(order):
    payload = notification(order)
    payload["Token"] = "f" * 64
    return payload


AUDITED = {
    "applied": (lambda order: notification(order), NotificationVerdict.APPLIED, 200),
    "recorded": (lambda order: notification(order, status="AUTHORIZED"), NotificationVerdict.RECORDED, 200),
    "forbidden": (_bad_token, NotificationVerdict.FORBIDDEN, 403),
    "wrong-terminal": (lambda order: notification(order, TerminalKey="X"), NotificationVerdict.FORBIDDEN, 403),
    "mismatch": (lambda order: notification(order, amount=1), NotificationVerdict.AMOUNT_MISMATCH, 409),
    "unknown": (lambda order: notification(order, OrderId="404404"), NotificationVerdict.UNKNOWN_ORDER, 404),
    "malformed": (lambda order: notification(order, Amount="x"), NotificationVerdict.MALFORMED, 400),
}


NOT_AUTHENTICATED = {"forbidden", "wrong-terminal"}


@pytest.mark.parametrize("case", AUDITED)
def test_every_notification_is_stored_with_the_token_redacted(order_factory, post_notification, case):
    order = order_factory()
    make, verdict, http_status = AUDITED[case]
    payload = make(order)

    response = post_notification(payload)

    assert response.status_code == http_status
    record = PaymentNotification.objects.get()
    assert (record.verdict, record.http_status) == (verdict, http_status)
    assert record.detail
    assert record.bank_status == payload["Status"]
    assert record.order_ref == str(payload["OrderId"])
    assert record.payment_id == "8742591"
    assert record.remote_addr == "127.0.0.1"
    body = json.dumps(payload).encode()
    assert (record.body_sha256, record.body_size) == (hashlib.sha256(body).hexdigest(), len(body))
    if case in NOT_AUTHENTICATED:
        # Only a summary of what failed authentication: the beginning of the body, Token masked.
        assert not record.authenticated
        assert record.raw_body == body.decode().replace(payload["Token"], "***")[:REJECTED_PREFIX_CHARS]
    else:
        assert record.authenticated
        stored = json.loads(record.raw_body)
        assert stored == {**payload, "Token": "***"}
    assert payload["Token"] not in record.raw_body
    for text in (record.raw_body, record.detail, response.content.decode()):
        assert settings.TBANK_PASSWORD not in text


def test_malformed_body_is_stored_as_text(db, post_notification):
    post_notification(b"not json at all")
    record = PaymentNotification.objects.get()
    assert (record.raw_body, record.order_ref, record.bank_status) == ("not json at all", "", "")


def test_oversized_body_is_stored_truncated(order_factory, post_notification, settings):
    settings.PAYMENT_NOTIFICATION_MAX_STORED_BYTES = 200
    order = order_factory()
    payload = notification(order, status="AUTHORIZED", Message="x" * 5000)

    assert_ok(post_notification(payload))

    raw = PaymentNotification.objects.get().raw_body
    assert len(raw) < 300
    assert "[truncated," in raw
    assert payload["Token"] not in raw


def test_nul_characters_do_not_lose_the_audit_record(db, post_notification):
    # PostgreSQL text cannot hold NUL: the body is refused (400), and its record is still written.
    payload = notification(Order(pk=1, amount_kopecks=100), OrderId="7\x007")

    response = post_notification(payload)

    assert response.status_code == 400
    assert "OrderId contains a NUL character" in response.content.decode()
    record = PaymentNotification.objects.get()
    assert (record.verdict, record.authenticated) == (NotificationVerdict.MALFORMED, False)
    assert "\x00" not in record.raw_body
