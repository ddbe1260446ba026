"""The T-Bank notification Token (orders.tbank) against the bank's published test vectors and
the protocol's pitfalls: booleans, nested objects, unknown root fields, number literals."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from orders import tbank
from orders.tbank import signing

# /work/shared/reference/tbank-notifications.md, "Test vectors".
TV1 = {
    "TerminalKey": "1234567890DEMO",
    "OrderId": "000000",
    "Success": True,
    "Status": "AUTHORIZED",
    "PaymentId": "0000000",
    "ErrorCode": "0",
    "Amount": 1111,
    "CardId": "000000",
    "Pan": "200000******0000",
    "ExpDate": "1111",
    "RebillId": "000000",
}
TV1_PASSWORD = "11111111111"
TV1_TOKEN = "1c0964277d0213349243065a0d5b838b8e90d2d25f740d0f2767836e710e80c8"

TV2 = {
    "TerminalKey": "1321054611234DEMO",
    "OrderId": "201709",
    "Success": True,
    "Status": "AUTHORIZED",
    "PaymentId": 8742591,
    "ErrorCode": "0",
    "Amount": 9855,
    "CardId": 322264,
    "Pan": "430000******0777",
    "ExpDate": "1122",
    "RebillId": 101709,
}
TV2_PASSWORD = "Dfsfh56dgKl"
TV2_TOKEN = "b906d28e76c6428e37b25fcf86c0adc52c63d503013fdd632e300593d165766b"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    ("payload", "password", "token"),
    [(TV1, TV1_PASSWORD, TV1_TOKEN), (TV2, TV2_PASSWORD, TV2_TOKEN)],
    ids=["TV1", "TV2"],
)
def test_published_test_vectors(payload, password, token):
    assert tbank.compute_token(payload, password) == token
    assert tbank.token_is_valid({**payload, "Token": token}, password)


@pytest.mark.parametrize(
    ("payload", "password", "token"),
    [(TV1, TV1_PASSWORD, TV1_TOKEN), (TV2, TV2_PASSWORD, TV2_TOKEN)],
    ids=["TV1", "TV2"],
)
def test_published_test_vectors_through_the_json_parser(payload, password, token):
    body = json.dumps({**payload, "Token": token}).encode()
    parsed = tbank.parse_notification(body)
    assert tbank.token_is_valid(parsed, password)


def test_token_field_itself_is_not_signed():
    assert tbank.compute_token({**TV2, "Token": "anything"}, TV2_PASSWORD) == TV2_TOKEN


def test_booleans_are_rendered_lowercase():
    payload = {"Status": "REJECTED", "Success": False}
    # Sorted keys: Password, Status, Success.
    assert tbank.compute_token(payload, "pw") == sha256("pwREJECTEDfalse")
    assert tbank.compute_token({**payload, "Success": True}, "pw") == sha256("pwREJECTEDtrue")
    assert tbank.compute_token(payload, "pw") != sha256("pwREJECTEDFalse")


def test_nested_data_object_and_arrays_are_excluded():
    with_nested = {**TV2, "Data": {"Email": "a@example.com", "Phone": "+70000000000"}, "Receipt": [{"Name": "x"}]}
    assert tbank.compute_token(with_nested, TV2_PASSWORD) == TV2_TOKEN


def test_unknown_root_field_is_included():
    # TV2's values in byte order of their keys, Password and the new SpAccumulationId in place.
    before = "985532226401122201709430000******0777Dfsfh56dgKl8742591101709"
    after = "AUTHORIZEDtrue1321054611234DEMO"
    assert sha256(before + after) == TV2_TOKEN  # the hand-built string is the bank's

    token = tbank.compute_token({**TV2, "SpAccumulationId": "777"}, TV2_PASSWORD)

    assert token == sha256(before + "777" + after)


def test_keys_are_sorted_by_bytes_not_case_insensitively():
    # "a" (0x61) sorts after "Z" (0x5a) in byte order; a case-insensitive sort would swap them.
    assert tbank.compute_token({"a": "1", "Z": "2"}, "P") == sha256("P21")


def test_float_literal_is_kept_exactly_as_sent():
    body = b'{"TerminalKey": "T", "OrderId": "1", "Status": "CONFIRMED", "Amount": 1111.0, "Token": "x"}'
    parsed = tbank.parse_notification(body)
    assert parsed["Amount"] == "1111.0"
    # Sorted: Amount, OrderId, Password, Status, TerminalKey.
    assert tbank.compute_token(parsed, "pw") == sha256("1111.01pwCONFIRMEDT")
    assert tbank.compute_token(parsed, "pw") != sha256("11111pwCONFIRMEDT")


@pytest.mark.parametrize("literal", ["1e3", "1E+3", "12.50", "-0.0"])
def test_other_number_literals_are_kept_exactly(literal):
    body = f'{{"TerminalKey": "T", "OrderId": "1", "Status": "S", "Amount": {literal}, "Token": "x"}}'.encode()
    parsed = tbank.parse_notification(body)
    assert tbank.compute_token(parsed, "pw") == sha256(f"{literal}1pwST")


def test_unicode_values_are_hashed_as_utf8():
    assert tbank.compute_token({"Message": "Оплата"}, "pw") == sha256("Оплатаpw")


def test_token_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    assert tbank.token_is_valid({**TV2, "Token": TV2_TOKEN}, TV2_PASSWORD)
    assert not tbank.token_is_valid({**TV2, "Token": "0" * 64}, TV2_PASSWORD)
    assert len(calls) == 2
    assert calls[0] == (TV2_TOKEN.encode(), TV2_TOKEN.encode())


def test_terminal_key_comparison_is_constant_time(monkeypatch):
    calls = []
    monkeypatch.setattr(signing.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or a == b)
    assert tbank.terminal_key_is_valid(TV2, "1321054611234DEMO")
    assert not tbank.terminal_key_is_valid(TV2, "OtherTerminal")
    assert len(calls) == 2


def test_uppercase_hex_token_is_accepted():
    assert tbank.token_is_valid({**TV2, "Token": TV2_TOKEN.upper()}, TV2_PASSWORD)


@pytest.mark.parametrize(
    "token",
    [TV1_TOKEN, TV2_TOKEN[:-1], TV2_TOKEN + "0", "", None, 12345, "ж" * 64],
    ids=["other-vector", "short", "long", "empty", "null", "number", "non-ascii"],
)
def test_wrong_tokens_are_rejected(token):
    assert not tbank.token_is_valid({**TV2, "Token": token}, TV2_PASSWORD)


def test_wrong_password_is_rejected():
    assert not tbank.token_is_valid({**TV2, "Token": TV2_TOKEN}, "not-the-password")


def test_any_changed_field_invalidates_the_token():
    assert not tbank.token_is_valid({**TV2, "Amount": 9856, "Token": TV2_TOKEN}, TV2_PASSWORD)
    assert not tbank.token_is_valid({**TV2, "Status": "CONFIRMED", "Token": TV2_TOKEN}, TV2_PASSWORD)


def test_sign_notification_round_trip_through_json():
    signed = tbank.sign_notification({**TV2, "Token": "stale"}, TV2_PASSWORD)
    assert signed["Token"] == TV2_TOKEN
    parsed = tbank.parse_notification(json.dumps(signed).encode())
    assert tbank.token_is_valid(parsed, TV2_PASSWORD)


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "not valid UTF-8"),
        (b"Status=CONFIRMED", "not valid JSON"),
        (b'{"Amount": NaN}', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"CONFIRMED"', "must be a JSON object"),
        (b'{"OrderId": "1", "Status": "CONFIRMED", "Token": "x"}', "TerminalKey is missing"),
        (b'{"TerminalKey": "T", "Status": "CONFIRMED", "Token": "x"}', "OrderId is missing"),
        (b'{"TerminalKey": "T", "OrderId": "1", "Token": "x"}', "Status is missing"),
        (b'{"TerminalKey": "T", "OrderId": "1", "Status": "CONFIRMED"}', "Token is missing"),
        (b'{"TerminalKey": 5, "OrderId": "1", "Status": "CONFIRMED", "Token": "x"}', "TerminalKey must be a string"),
        (b'{"TerminalKey": "T", "OrderId": "1", "Status": true, "Token": "x"}', "Status must be a string"),
        (b'{"TerminalKey": "T", "OrderId": "1", "Status": "S", "Token": null}', "Token must be a string"),
        (b'{"TerminalKey": "T", "OrderId": true, "Status": "S", "Token": "x"}', "OrderId must be a string"),
        (b'{"TerminalKey": "T", "OrderId": 1.5, "Status": "S", "Token": "x"}', "OrderId must be a string"),
        (b'{"TerminalKey": "T", "OrderId": {}, "Status": "S", "Token": "x"}', "OrderId must be a string"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(body, message):
    with pytest.raises(tbank.MalformedNotification, match=message):
        tbank.parse_notification(body)


def test_integer_order_id_is_accepted():
    parsed = tbank.parse_notification(b'{"TerminalKey": "T", "OrderId": 17, "Status": "S", "Token": "x"}')
    assert parsed["OrderId"] == 17


# --- redaction for the audit log -------------------------------------------------------------


def test_redact_body_masks_the_token_and_keeps_the_rest():
    body = json.dumps({**TV2, "Token": TV2_TOKEN}).encode()
    stored = tbank.redact_body(body, 10_000)
    assert TV2_TOKEN not in stored
    assert json.loads(stored) == {**TV2, "Token": "***"}


def test_redact_body_bounds_the_size():
    body = json.dumps({**TV2, "Message": "x" * 500, "Token": TV2_TOKEN}).encode()
    stored = tbank.redact_body(body, 100)
    assert stored.startswith('{"TerminalKey"')
    assert stored.endswith(f"... [truncated, {len(body)} bytes received]")
    assert TV2_TOKEN not in stored


def test_redact_body_keeps_non_json_as_text():
    assert tbank.redact_body(b"\xffnot json", 100) == "\ufffdnot json"
