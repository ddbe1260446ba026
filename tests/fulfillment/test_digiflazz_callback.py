"""POST /api/fulfillment/digiflazz/callback: signature, ping, resolution of pending units, duplicates."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment.models import AttemptKind, Delivery, DeliveryAttempt, DeliveryStatus, OrderFlag
from fulfillment.services import fulfill_order
from orders.models import Order
from tests.conftest import let_time_pass

pytestmark = pytest.mark.django_db


def _status(order_id: int) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order_id)


def test_documented_pending_then_success_callback(fake_digiflazz, pending_unit, post_digiflazz_callback):
    data = fake_digiflazz.settle(pending_unit.reference, status="Sukses", rc="00", sn="SN-0001")
    response = post_digiflazz_callback({"data": data})

    assert response.status_code == 200
    assert response.json() == {"detail": "applied"}
    unit = Delivery.objects.get(pk=pending_unit.pk)
    assert (unit.status, unit.serial) == (DeliveryStatus.DELIVERED, "SN-0001")
    assert _status(unit.order_id) == "fulfilled"
    callback = DeliveryAttempt.objects.filter(delivery=unit).last()
    assert (callback.kind, callback.outcome, callback.reference) == (AttemptKind.CALLBACK, "delivered", unit.reference)
    assert len(fake_digiflazz.transaction_calls) == 1  # the callback saved a status check


def test_documented_pending_then_failed_callback(fake_digiflazz, digiflazz_order, post_digiflazz_callback):
    order = digiflazz_order(recipient="087800001234")
    fulfill_order(order.pk)
    unit = Delivery.objects.get(order=order)
    data = fake_digiflazz.settle(unit.reference, status="Gagal", rc="02", message="Transaksi Gagal")
    response = post_digiflazz_callback({"data": data})

    assert response.status_code == 200
    assert response.json() == {"detail": "applied"}
    after = Delivery.objects.get(pk=unit.pk)
    assert after.status != DeliveryStatus.DELIVERED
    assert (after.last_code, after.failure_scope) == ("02", "retryable")  # per the rc table
    assert after.reference != unit.reference  # a final failure: the next purchase is a new one
    assert DeliveryAttempt.objects.filter(delivery=unit).last().outcome == "failed"
    assert _status(order.pk) == "paid"


def test_permanent_failure_callback_marks_the_unit_failed(fake_digiflazz, pending_unit, post_digiflazz_callback):
    data = fake_digiflazz.settle(pending_unit.reference, status="Gagal", rc="54")
    post_digiflazz_callback({"data": data})
    assert Delivery.objects.get(pk=pending_unit.pk).status == DeliveryStatus.FAILED


@pytest.mark.parametrize(
    "signature",
    [
        "",  # missing
        "sha1=0000000000000000000000000000000000000000",
        "sha256=abcdef",
        "garbage",
        "sha1=é",
        "sha1=" + "é" * 40,
        "sha1=\u202e0000",
        "sha1= ",
    ],
    ids=["missing", "wrong-hex", "wrong-scheme", "garbage", "non-ascii", "non-ascii-40", "bidi", "blank"],
)
def test_bad_or_missing_signature_is_refused_and_changes_nothing(
    fake_digiflazz, pending_unit, post_digiflazz_callback, signature
):
    data = fake_digiflazz.settle(pending_unit.reference, status="Sukses", rc="00", sn="FORGED")
    response = post_digiflazz_callback({"data": data}, signature=signature)

    assert response.status_code == 403
    assert "X-Hub-Signature" in response.json()["detail"]
    unit = Delivery.objects.get(pk=pending_unit.pk)
    assert (unit.status, unit.serial) == (DeliveryStatus.PENDING, "")
    assert DeliveryAttempt.objects.filter(delivery=unit).count() == 1


def test_signature_made_with_another_secret_is_refused(fake_digiflazz, pending_unit, post_digiflazz_callback):
    data = fake_digiflazz.settle(pending_unit.reference, status="Sukses", rc="00", sn="FORGED")
    assert post_digiflazz_callback({"data": data}, secret="not-our-secret").status_code == 403
    assert Delivery.objects.get(pk=pending_unit.pk).status == DeliveryStatus.PENDING


def test_signature_covers_the_raw_bytes(fake_digiflazz, pending_unit, post_digiflazz_callback):
    data = fake_digiflazz.settle(pending_unit.reference, status="Sukses", rc="00", sn="SN-RAW")
    # Spacing and key order a re-serialising parser would not reproduce.
    body = ('{ "data" :' + json.dumps(data, indent=3, sort_keys=True) + "}\n").encode()
    assert post_digiflazz_callback(body).status_code == 200
    assert Delivery.objects.get(pk=pending_unit.pk).serial == "SN-RAW"


def test_ping_is_answered(fake_digiflazz, post_digiflazz_callback):
    response = post_digiflazz_callback({"zen": "Keep it simple.", "hook_id": "abc123", "hook": {"type": "Buyer"}})
    assert response.status_code == 200
    assert response.json() == {"detail": "pong"}


def test_unknown_ref_id_changes_nothing(fake_digiflazz, pending_unit, post_digiflazz_callback):
    data = {"ref_id": "never-issued", "status": "Sukses", "rc": "00", "sn": "X"}
    response = post_digiflazz_callback({"data": data})
    assert response.status_code == 200
    assert response.json() == {"detail": "nothing to change"}
    assert Delivery.objects.get(pk=pending_unit.pk).status == DeliveryStatus.PENDING
    assert not DeliveryAttempt.objects.filter(kind=AttemptKind.CALLBACK).exists()


def test_duplicate_callback_is_applied_once(fake_digiflazz, pending_unit, post_digiflazz_callback):
    data = fake_digiflazz.settle(pending_unit.reference, status="Sukses", rc="00", sn="SN-0001")
    first = post_digiflazz_callback({"data": data})
    second = post_digiflazz_callback({"data": data})

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"detail": "nothing to change"}
    # Both are on record (every callback is); only the first changed the unit, and a repeat of
    # the same outcome is no contradiction.
    assert DeliveryAttempt.objects.filter(kind=AttemptKind.CALLBACK).count() == 2
    assert Delivery.objects.get(pk=pending_unit.pk).serial == "SN-0001"
    assert not OrderFlag.objects.exists()


def test_delivered_unit_never_goes_back(fake_digiflazz, pending_unit, post_digiflazz_callback):
    delivered = fake_digiflazz.settle(pending_unit.reference, status="Sukses", rc="00", sn="SN-0001")
    post_digiflazz_callback({"data": delivered})
    failed = {**delivered, "status": "Gagal", "rc": "74", "sn": ""}
    assert post_digiflazz_callback({"data": failed}).status_code == 200

    unit = Delivery.objects.get(pk=pending_unit.pk)
    assert (unit.status, unit.serial) == (DeliveryStatus.DELIVERED, "SN-0001")
    assert _status(unit.order_id) == "fulfilled"
    # ... but the contradiction is on record and in front of staff.
    flag = OrderFlag.objects.get()
    assert (flag.order_id, flag.delivery_id, flag.kind) == (unit.order_id, unit.pk, "callback_contradicts")
    assert flag.attempt.code == "74"
    # ... but the contradiction is on record and in front of staff.
    flag = OrderFlag.objects.get()
    assert (flag.order_id, flag.delivery_id, flag.kind) == (unit.order_id, unit.pk, "callback_contradicts")
    assert flag.attempt.code == "74"


def test_pending_callback_changes_nothing(fake_digiflazz, pending_unit, post_digiflazz_callback):
    data = {**fake_digiflazz.transactions[pending_unit.reference]}
    assert post_digiflazz_callback({"data": data}).status_code == 200
    unit = Delivery.objects.get(pk=pending_unit.pk)
    assert unit.status == DeliveryStatus.PENDING
    assert unit.next_attempt_at > timezone.now()  # the scheduled re-check stays


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"data": {"status": "Sukses"}}', b'{"data": "text"}', b"\xff\xfe"],
    ids=["broken", "array", "no-ref-id", "data-not-object", "not-utf8"],
)
def test_malformed_body_is_400(fake_digiflazz, post_digiflazz_callback, body):
    response = post_digiflazz_callback(body)
    assert response.status_code == 400


def test_without_a_secret_a_callback_only_queues_a_status_check(
    fake_digiflazz,
    digiflazz_settings,
    pending_unit,
    post_digiflazz_callback,
    queued_deliveries,
    django_capture_on_commit_callbacks,
):
    digiflazz_settings.DIGIFLAZZ_WEBHOOK_SECRET = ""
    data = fake_digiflazz.settle(pending_unit.reference, status="Sukses", rc="00", sn="SN-0001")
    forged = {**data, "status": "Gagal", "rc": "02"}  # an unsigned body could say anything
    with django_capture_on_commit_callbacks(execute=True):
        response = post_digiflazz_callback({"data": forged}, signature="")
    assert response.json() == {"detail": "status check queued"}
    unit = Delivery.objects.get(pk=pending_unit.pk)
    assert (unit.status, unit.reference) == (DeliveryStatus.PENDING, pending_unit.reference)
    assert queued_deliveries == [unit.order_id]
    # Digiflazz's own answer, with the same ref_id, decides; never sooner than a minute apart.
    assert unit.next_attempt_at <= timezone.now() + timedelta(seconds=60)
    let_time_pass(pk=unit.pk)  # the minute since the purchase: the hint never makes it sooner
    fulfill_order(unit.order_id)
    unit.refresh_from_db()
    assert (unit.status, unit.serial) == (DeliveryStatus.DELIVERED, "SN-0001")
    assert [body["ref_id"] for body in fake_digiflazz.transaction_calls] == [unit.reference] * 2


def test_callback_settles_a_unit_still_being_sent(fake_digiflazz, digiflazz_order, post_digiflazz_callback):
    # The callback can arrive before the purchase call returns (the unit is still SENDING).
    order = digiflazz_order(recipient="087800001233")
    unit = Delivery.objects.get(order=order)
    Delivery.objects.filter(pk=unit.pk).update(status=DeliveryStatus.SENDING, provider="digiflazz")
    data = {"ref_id": unit.reference, "status": "Sukses", "rc": "00", "sn": "EARLY"}
    assert post_digiflazz_callback({"data": data}).json() == {"detail": "applied"}
    assert Delivery.objects.get(pk=unit.pk).status == DeliveryStatus.DELIVERED


def test_only_post_is_allowed(fake_digiflazz, client):
    assert client.get("/api/fulfillment/digiflazz/callback").status_code == 405
