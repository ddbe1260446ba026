"""Hostile input on the Digiflazz callback: lone surrogates, NUL characters, numbers that are
not JSON, deep nesting, values of the wrong shape. Signed or not, each is a 400 naming the
problem (never a 500, nor a 503 that Digiflazz would retry), and no unit changes."""

from __future__ import annotations

import json

import pytest

from fulfillment.models import DeliveryAttempt, DeliveryStatus

pytestmark = pytest.mark.django_db


def _callback(unit, **overrides) -> dict:
    data = {"ref_id": unit.reference, "status": "Sukses", "rc": "00", "sn": "SN-1", "message": "Transaksi Sukses"}
    data.update(overrides)
    return {"data": data}


def _assert_unchanged(unit) -> None:
    unit.refresh_from_db()
    assert (unit.status, unit.serial) == (DeliveryStatus.PENDING, "")
    assert DeliveryAttempt.objects.filter(delivery=unit).count() == 1  # the purchase only


@pytest.mark.parametrize("with_secret", [True, False], ids=["signed", "no-secret"])
@pytest.mark.parametrize("field", ["ref_id", "sn", "message", "status", "customer_no", "<key>"])
@pytest.mark.parametrize("bad", ["\ud800", "a\x00b"], ids=["surrogate", "nul"])
def test_surrogates_and_nul_in_any_field_are_a_bad_request(
    pending_unit, post_digiflazz_callback, digiflazz_settings, with_secret, field, bad
):
    if not with_secret:
        digiflazz_settings.DIGIFLAZZ_WEBHOOK_SECRET = ""
    payload = _callback(pending_unit)
    if field == "<key>":
        payload["data"][bad] = "x"
    else:
        payload["data"][field] = pending_unit.reference + bad if field == "ref_id" else bad

    response = post_digiflazz_callback(json.dumps(payload).encode(), signature=None if with_secret else "")

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "surrogate" in detail if bad == "\ud800" else "NUL character" in detail
    _assert_unchanged(pending_unit)


@pytest.mark.parametrize(
    ("literal", "message"),
    [("1e999", "out of range"), ("NaN", "NaN"), ("-Infinity", "Infinity"), ("9" * 5000, "not JSON")],
)
def test_numbers_that_are_not_json_are_a_bad_request(pending_unit, post_digiflazz_callback, literal, message):
    body = json.dumps(_callback(pending_unit, price="@@")).replace('"@@"', literal).encode()
    response = post_digiflazz_callback(body)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    _assert_unchanged(pending_unit)


def test_a_huge_integer_that_python_reads_is_stored_like_any_answer(pending_unit, post_digiflazz_callback):
    response = post_digiflazz_callback(_callback(pending_unit, price=10**300))
    assert response.json() == {"detail": "applied"}
    assert DeliveryAttempt.objects.filter(delivery=pending_unit).last().raw["price"] == 10**300


@pytest.mark.parametrize("depth", [40, 1000, 60_000])
def test_deep_nesting_is_a_bad_request(pending_unit, post_digiflazz_callback, depth):
    body = (
        b'{"data": {"ref_id": "' + pending_unit.reference.encode() + b'", "x": ' + b"[" * depth + b"]" * depth + b"}}"
    )
    response = post_digiflazz_callback(body)
    assert response.status_code == 400
    _assert_unchanged(pending_unit)


@pytest.mark.parametrize("field", ["ref_id", "status", "rc", "sn", "message"])
@pytest.mark.parametrize("value", [[1, 2], {"a": 1}], ids=["array", "object"])
def test_structured_values_where_text_belongs_are_a_bad_request(pending_unit, post_digiflazz_callback, field, value):
    response = post_digiflazz_callback(_callback(pending_unit, **{field: value}))
    assert response.status_code == 400
    assert f"data.{field} must be text or a number" in response.json()["detail"]
    _assert_unchanged(pending_unit)


def test_a_ref_id_longer_than_any_of_ours_is_a_bad_request(pending_unit, post_digiflazz_callback):
    response = post_digiflazz_callback(_callback(pending_unit, ref_id="R" * 5000))
    assert response.status_code == 400
    _assert_unchanged(pending_unit)
