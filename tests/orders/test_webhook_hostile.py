"""Hostile input on the T-Bank webhook: lone surrogates, NUL characters, huge numbers, deep
nesting, huge bodies, junk from outside the allowed networks, forwarded addresses that are not
addresses. Each gets a 4xx naming the problem (never a 500 or a 503, which the bank would
retry for ever), changes nothing, and leaves at most a bounded summary when unauthenticated.
docs/reliability.md "Hostile input" lists them with their answers."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.conf import settings

from orders.models import NotificationVerdict, Order, PaymentNotification
from orders.services.notifications import REJECTED_PREFIX_CHARS, source_address
from orders.tbank import sign_notification
from tests.conftest import WEBHOOK_URL, notification

pytestmark = pytest.mark.django_db


def status_of(order: Order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


def _post(client, body: bytes | str, **extra):
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **extra)


def _assert_summary_only(record: PaymentNotification, body: bytes) -> None:
    assert not record.authenticated
    assert len(record.raw_body) <= REJECTED_PREFIX_CHARS
    assert (record.body_size, record.body_sha256) == (len(body), hashlib.sha256(body).hexdigest())


# --- lone surrogates and NUL characters --------------------------------------------------------


def _with(payload: dict, path: tuple, value) -> dict:
    """`payload` with `value` at `path` (a key, or keys into nested objects; "<key>" renames a key)."""
    payload = json.loads(json.dumps(payload))
    if path == ("<key>",):
        payload[value] = "x"
        return payload
    target = payload
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return payload


FIELDS = [("OrderId",), ("Status",), ("TerminalKey",), ("Token",), ("PaymentId",), ("Pan",), ("DATA", "Route")]


@pytest.mark.parametrize("path", FIELDS + [("<key>",)], ids=lambda p: ".".join(p))
@pytest.mark.parametrize("bad", ["\ud800", "ok\udfffok"], ids=["high", "low-inside"])
def test_a_lone_surrogate_in_any_field_is_a_bad_request(order_factory, client, path, bad):
    order = order_factory()
    payload = _with(notification(order), path, bad)
    body = json.dumps(payload).encode()  # ensure_ascii: the surrogate travels as the escape \\ud800

    response = _post(client, body)

    assert response.status_code == 400
    assert "lone UTF-16 surrogate" in response.content.decode()
    assert status_of(order) == "new"
    record = PaymentNotification.objects.get()
    assert record.verdict == NotificationVerdict.MALFORMED
    _assert_summary_only(record, body)


def test_a_surrogate_sent_as_raw_bytes_is_not_utf8(order_factory, client):
    order = order_factory()
    body = json.dumps(_with(notification(order), ("Pan",), "\ud800"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )
    response = _post(client, body)
    assert response.status_code == 400
    assert b"not valid UTF-8" in response.content


@pytest.mark.parametrize("path", FIELDS + [("<key>",)], ids=lambda p: ".".join(p))
def test_a_nul_character_in_any_field_is_a_bad_request_even_when_signed(order_factory, client, path):
    # PostgreSQL text cannot hold NUL: a signed CONFIRMED with one used to fail in the order's
    # UPDATE (503, retried for ever by the bank). Every backend refuses it the same way now.
    order = order_factory()
    payload = _with(notification(order), path, "87\x0042")
    payload = sign_notification(payload, settings.TBANK_PASSWORD) if path != ("Token",) else payload

    response = _post(client, json.dumps(payload))

    assert response.status_code == 400
    assert "NUL character" in response.content.decode()
    assert status_of(order) == "new"
    record = PaymentNotification.objects.get()
    assert (record.verdict, record.authenticated) == (NotificationVerdict.MALFORMED, False)
    assert "\x00" not in record.raw_body + record.detail + record.order_ref + record.payment_id


# --- numbers ------------------------------------------------------------------------------------


def test_an_amount_beyond_any_column_is_a_conflict_not_an_error(order_factory, client):
    order = order_factory()
    response = _post(client, json.dumps(notification(order, Amount=10**30)))
    assert response.status_code == 409
    record = PaymentNotification.objects.get()
    assert (record.verdict, record.amount_kopecks) == (NotificationVerdict.AMOUNT_MISMATCH, None)
    assert status_of(order) == "new"


@pytest.mark.parametrize("literal", ["9" * 5000, "1e999", "NaN", "-Infinity"])
def test_numbers_that_cannot_be_read_are_a_bad_request(order_factory, client, literal):
    order = order_factory()
    # Signed over the literal exactly as sent, so only the number itself can be wrong.
    body = json.dumps(notification(order, Amount=literal)).replace(f'"{literal}"', literal)
    response = _post(client, body)
    assert response.status_code == 400
    assert status_of(order) == "new"


def test_a_payment_id_longer_than_the_order_keeps_is_a_bad_request(order_factory, client):
    order = order_factory()
    response = _post(client, json.dumps(notification(order, PaymentId=10**70)))
    assert response.status_code == 400
    assert b"PaymentId must be at most 64 characters" in response.content
    assert status_of(order) == "new"


# --- nesting and size -------------------------------------------------------------------------------


def test_nesting_deeper_than_the_limit_is_a_bad_request(order_factory, client):
    order = order_factory()
    nested: dict = {"leaf": 1}
    for _ in range(40):
        nested = {"n": nested}
    response = _post(client, json.dumps(notification(order, DATA=nested)))
    assert response.status_code == 400
    assert b"nested deeper than 32 levels" in response.content
    assert status_of(order) == "new"


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000], ids=["array", "open-object"])
def test_pathological_nesting_is_a_bad_request(db, client, body):
    response = _post(client, body)
    assert response.status_code == 400
    _assert_summary_only(PaymentNotification.objects.get(), body)


def test_a_body_over_the_limit_is_refused_before_it_is_read(db, client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 4096
    response = _post(client, b'{"a":"' + b"x" * 5000 + b'"}')
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "at most 4096" in response.json()["detail"]
    assert not PaymentNotification.objects.exists()


def test_a_content_length_that_is_not_a_number_is_a_bad_request(db, client):
    response = _post(client, b"{}", CONTENT_LENGTH="twelve")
    assert response.status_code == 400
    assert "Content-Length" in response.json()["detail"]


# --- what is stored of what failed authentication -------------------------------------------------


def test_a_20kb_junk_body_is_stored_as_a_bounded_summary(db, client):
    body = b"\x01junk" * 4096  # 20 KB, not JSON

    response = _post(client, body)

    assert response.status_code == 400
    record = PaymentNotification.objects.get()
    assert record.verdict == NotificationVerdict.MALFORMED
    _assert_summary_only(record, body)
    assert record.raw_body == body.decode()[:REJECTED_PREFIX_CHARS]


def test_a_forged_notification_is_stored_as_a_bounded_summary(order_factory, client):
    order = order_factory()
    payload = notification(order, Message="x" * 20_000)
    payload["Token"] = "0" * 64
    body = json.dumps(payload).encode()

    response = _post(client, body)

    assert response.status_code == 403
    record = PaymentNotification.objects.get()
    _assert_summary_only(record, body)
    assert "x" * 200 not in record.raw_body
    assert (record.order_ref, record.bank_status) == (order.public_id, "CONFIRMED")  # bounded columns still help


def test_an_authenticated_notification_is_stored_whole(order_factory, client):
    order = order_factory()
    payload = notification(order, status="AUTHORIZED", Message="x" * 2000)
    assert _post(client, json.dumps(payload)).status_code == 200
    record = PaymentNotification.objects.get()
    assert record.authenticated
    assert json.loads(record.raw_body) == {**payload, "Token": "***"}


# --- source first --------------------------------------------------------------------------------


def test_a_source_outside_the_networks_is_refused_before_the_body_is_parsed(db, client, settings):
    settings.TBANK_ALLOWED_NETWORKS = ["91.194.226.0/23"]
    body = b"\x01junk" * 4096

    response = _post(client, body, REMOTE_ADDR="10.0.0.1")

    # 403 for the source, not 400 for the body: the body was never parsed.
    assert response.status_code == 403
    assert b"not in TBANK_ALLOWED_NETWORKS" in response.content
    record = PaymentNotification.objects.get()
    assert (record.verdict, record.remote_addr, record.bank_status) == (NotificationVerdict.FORBIDDEN, "10.0.0.1", "")
    assert "10.0.0.1" in record.detail
    _assert_summary_only(record, body)


def test_a_valid_notification_from_outside_the_networks_is_only_summarised(order_factory, client, settings):
    settings.TBANK_ALLOWED_NETWORKS = ["91.194.226.0/23"]
    order = order_factory()
    body = json.dumps(notification(order, Message="y" * 1000)).encode()

    assert _post(client, body, REMOTE_ADDR="10.0.0.1").status_code == 403

    assert status_of(order) == "new"
    _assert_summary_only(PaymentNotification.objects.get(), body)


# --- forwarded addresses ------------------------------------------------------------------------

NOT_ADDRESSES = ["91.194.226.10:51234", "garbage", "[2001:db8::1]:443", "fe80::1%eth0", "999.1.1.1", " ", "\x00"]


@pytest.mark.parametrize("forwarded", NOT_ADDRESSES)
def test_a_forwarded_value_that_is_not_an_address_is_an_unknown_source(order_factory, client, settings, forwarded):
    settings.TBANK_TRUST_X_FORWARDED_FOR = True
    order = order_factory()

    response = _post(client, json.dumps(notification(order)), HTTP_X_FORWARDED_FOR=f"10.1.1.1, {forwarded}")

    # No allow-list: the Token decides, and the source is stored as unknown.
    assert (response.status_code, response.content) == (200, b"OK")
    assert status_of(order) == "paid"
    assert PaymentNotification.objects.get().remote_addr is None


@pytest.mark.parametrize("forwarded", NOT_ADDRESSES)
def test_with_an_allow_list_a_forwarded_non_address_is_refused(order_factory, client, settings, forwarded):
    settings.TBANK_TRUST_X_FORWARDED_FOR = True
    settings.TBANK_ALLOWED_NETWORKS = ["91.194.226.0/23"]
    order = order_factory()

    response = _post(client, json.dumps(notification(order)), HTTP_X_FORWARDED_FOR=forwarded)

    assert response.status_code == 403
    assert status_of(order) == "new"
    record = PaymentNotification.objects.get()
    assert (record.remote_addr, record.authenticated) == (None, False)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("91.194.226.10", "91.194.226.10"),
        (" 91.194.226.10 ", "91.194.226.10"),
        ("2001:DB8::0:1", "2001:db8::1"),
        ("::ffff:91.194.226.10", "::ffff:5bc2:e20a"),
        ("91.194.226.10:51234", None),
        ("fe80::1%eth0", None),
        ("", None),
        (None, None),
    ],
)
def test_source_address_is_canonical_or_unknown(given, expected):
    assert source_address(given) == expected
