"""Property-based fuzzing of the Digiflazz callback, POST /api/fulfillment/digiflazz/callback.

Whatever the body (hostile values in any field, lone surrogates, NUL characters, numbers too
long to parse or overflowing to infinity, deep nesting, bodies that are not JSON or over the
size limit) and whatever the signature (valid, another secret's, non-ASCII, none), with or
without DIGIFLAZZ_WEBHOOK_SECRET: the answer is JSON and never a 5xx; a unit moves only on a
validly signed callback answered 200 that names its reference; nothing unsigned is recorded.
The hostile values come from tests/fuzz_strategies.py.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.conf import settings
from django.test import Client
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from fulfillment.models import Delivery, DeliveryAttempt, DeliveryStatus
from tests.conftest import DIGIFLAZZ_CALLBACK_URL, DIGIFLAZZ_WEBHOOK_SECRET
from tests.fuzz_strategies import dump_body, hostile_json_bodies, hostile_strings, hostile_values

DATA_FIELDS = ["ref_id", "customer_no", "buyer_sku_code", "message", "status", "rc", "sn", "price", "buyer_last_saldo"]
SIGNATURE_MODES = ["valid"] * 6 + ["other_secret", "non_ascii", "missing", "garbage"]


def _sign(body: bytes, secret: str) -> str:
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


@st.composite
def callbacks(draw, reference: str) -> tuple[bytes, str, bool]:
    """(body, X-Hub-Signature, signed with our secret) for a callback about `reference`."""
    if draw(st.integers(0, 9)) < 2:
        body = draw(hostile_json_bodies(size_limit=settings.WEBHOOK_MAX_BODY_BYTES))
    else:
        data = {
            "ref_id": reference,
            "customer_no": "087800001233",
            "buyer_sku_code": "xld10",
            "message": "Transaksi Sukses",
            "status": draw(st.sampled_from(["Sukses", "Gagal", "Pending", "sukses", ""])),
            "rc": draw(st.sampled_from(["00", "02", "03", "54", "41", "99", ""])),
            "sn": "SN-FUZZ",
            "buyer_last_saldo": 980000,
            "price": 10000,
        }
        data.update(draw(st.dictionaries(st.sampled_from(DATA_FIELDS) | hostile_strings, hostile_values, max_size=3)))
        for field in draw(st.sets(st.sampled_from(DATA_FIELDS), max_size=2)):
            data.pop(field, None)
        payload = draw(st.sampled_from([{"data": data}, {"data": data, "extra": draw(hostile_values)}]))
        body = dump_body(payload, ascii_only=draw(st.booleans()))
    mode = draw(st.sampled_from(SIGNATURE_MODES))
    signature = {
        "valid": _sign(body, DIGIFLAZZ_WEBHOOK_SECRET),
        "other_secret": _sign(body, "not-our-secret"),
        "non_ascii": "sha1=" + draw(st.text(min_size=1, max_size=40)),
        "missing": "",
        "garbage": draw(st.text(max_size=60)).replace("\x00", ""),
    }[mode]
    return body, signature, mode == "valid"


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_callback_never_fails_and_moves_a_unit_only_when_signed(
    fake_digiflazz, digiflazz_settings, digiflazz_order, queued_deliveries, data
):
    with_secret = data.draw(st.booleans(), label="with DIGIFLAZZ_WEBHOOK_SECRET")
    digiflazz_settings.DIGIFLAZZ_WEBHOOK_SECRET = DIGIFLAZZ_WEBHOOK_SECRET if with_secret else ""
    order = digiflazz_order(recipient="087800001233")
    unit = Delivery.objects.get(order=order)
    Delivery.objects.filter(pk=unit.pk).update(status=DeliveryStatus.PENDING, provider="digiflazz")
    body, signature, signed = data.draw(callbacks(unit.reference))
    headers = {"HTTP_X_HUB_SIGNATURE": signature} if signature else {}

    response = Client().post(DIGIFLAZZ_CALLBACK_URL, data=body, content_type="application/json", **headers)

    assert response.status_code < 500, (response.status_code, response.content[:300])
    assert response.status_code in (200, 400, 403, 413)
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()
    after = Delivery.objects.get(pk=unit.pk)
    event(f"HTTP {response.status_code}, {'signed' if signed else 'unsigned'}, secret {with_secret}, {after.status}")
    if len(body) > settings.WEBHOOK_MAX_BODY_BYTES:
        assert response.status_code == 413
    if with_secret and not signed:
        assert response.status_code in (403, 413)
    if not (with_secret and signed and response.status_code == 200):
        # Unsigned or refused: nothing about the unit changed, nothing was recorded.
        assert (after.status, after.reference, after.serial) == (DeliveryStatus.PENDING, unit.reference, "")
        assert not DeliveryAttempt.objects.filter(delivery=unit).exists()
