"""Every signed callback about a known reference is on record as a DeliveryAttempt, whether it
changed the unit or not; one that contradicts what is recorded (a failure after a delivery, a
delivery of a purchase recorded as failed) flags the order for staff (OrderFlag)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from fulfillment.models import AttemptKind, Delivery, DeliveryAttempt, DeliveryStatus, FlagKind, OrderFlag
from fulfillment.services import fulfill_order, order_flag_resolve, orders_needing_review

pytestmark = pytest.mark.django_db


def _callbacks(unit: Delivery) -> list[DeliveryAttempt]:
    return list(DeliveryAttempt.objects.filter(delivery=unit, kind=AttemptKind.CALLBACK).order_by("id"))


@pytest.fixture
def delivered_unit(fake_digiflazz, pending_unit, post_digiflazz_callback):
    data = fake_digiflazz.settle(pending_unit.reference, status="Sukses", rc="00", sn="SN-0001")
    assert post_digiflazz_callback({"data": data}).json() == {"detail": "applied"}
    return Delivery.objects.get(pk=pending_unit.pk)


def test_a_pending_callback_is_recorded_and_changes_nothing(fake_digiflazz, pending_unit, post_digiflazz_callback):
    data = {**fake_digiflazz.transactions[pending_unit.reference]}
    assert post_digiflazz_callback({"data": data}).json() == {"detail": "nothing to change"}
    [callback] = _callbacks(pending_unit)
    assert (callback.outcome, callback.reference, callback.code) == ("pending", pending_unit.reference, "03")
    assert Delivery.objects.get(pk=pending_unit.pk).status == DeliveryStatus.PENDING
    assert not OrderFlag.objects.exists()


def test_a_failure_reported_after_the_delivery_is_recorded_and_flags_the_order(
    fake_digiflazz, delivered_unit, post_digiflazz_callback
):
    refunded = {**fake_digiflazz.transactions[delivered_unit.reference], "status": "Gagal", "rc": "74", "sn": ""}
    assert post_digiflazz_callback({"data": refunded}).json() == {"detail": "nothing to change"}

    unit = Delivery.objects.get(pk=delivered_unit.pk)
    assert (unit.status, unit.serial) == (DeliveryStatus.DELIVERED, "SN-0001")  # a delivery is a fact
    success, failure = _callbacks(unit)
    assert (failure.outcome, failure.code) == ("failed", "74")
    flag = OrderFlag.objects.get()
    assert (flag.order_id, flag.delivery_id, flag.attempt_id, flag.kind) == (
        unit.order_id,
        unit.pk,
        failure.pk,
        FlagKind.CALLBACK_CONTRADICTS,
    )
    assert unit.reference in flag.reason and "rc 74" in flag.reason
    assert list(orders_needing_review()) == [unit.order]


def test_the_same_contradiction_again_adds_a_record_not_a_flag(fake_digiflazz, delivered_unit, post_digiflazz_callback):
    refunded = {**fake_digiflazz.transactions[delivered_unit.reference], "status": "Gagal", "rc": "74"}
    for _ in range(3):
        post_digiflazz_callback({"data": refunded})
    assert len(_callbacks(delivered_unit)) == 4
    assert OrderFlag.objects.count() == 1


def test_a_resolved_flag_leaves_the_review_list(fake_digiflazz, delivered_unit, post_digiflazz_callback):
    post_digiflazz_callback({"data": {"ref_id": delivered_unit.reference, "status": "Gagal", "rc": "74"}})
    flag = OrderFlag.objects.get()
    assert order_flag_resolve(flag_id=flag.pk, resolved_by="alice") is True
    assert order_flag_resolve(flag_id=flag.pk, resolved_by="bob") is False
    flag.refresh_from_db()
    assert flag.resolved_by == "alice" and flag.resolved_at is not None
    assert not orders_needing_review().exists()


def test_a_delivery_reported_for_a_replaced_purchase_flags_a_possible_double_delivery(
    fake_digiflazz, digiflazz_order, post_digiflazz_callback
):
    fake_digiflazz.answer("0811", status="Gagal", rc="02")
    order = digiflazz_order(recipient="0811")
    first = Delivery.objects.get(order=order).reference
    fulfill_order(order.pk)  # failed for good: bought again later under a new reference
    unit = Delivery.objects.get(order=order)
    assert unit.reference != first

    # Digiflazz changes its mind about the first purchase.
    late = {"ref_id": first, "status": "Sukses", "rc": "00", "sn": "SN-LATE"}
    assert post_digiflazz_callback({"data": late}).json() == {"detail": "nothing to change"}

    recorded = _callbacks(unit)[-1]
    assert (recorded.reference, recorded.outcome, recorded.serial) == (first, "delivered", "SN-LATE")
    assert Delivery.objects.get(pk=unit.pk).reference == unit.reference  # nothing moved
    flag = OrderFlag.objects.get()
    assert "delivered twice" in flag.reason and first in flag.reason


def test_a_delivery_reported_for_a_failed_unit_flags_it(fake_digiflazz, digiflazz_order, post_digiflazz_callback):
    fake_digiflazz.answer("0811", status="Gagal", rc="54")
    order = digiflazz_order(recipient="0811")
    fulfill_order(order.pk)
    unit = Delivery.objects.get(order=order)
    assert unit.status == DeliveryStatus.FAILED

    post_digiflazz_callback({"data": {"ref_id": unit.reference, "status": "Sukses", "rc": "00", "sn": "S"}})

    assert Delivery.objects.get(pk=unit.pk).status == DeliveryStatus.FAILED
    assert "recorded as failed" in OrderFlag.objects.get().reason


def test_a_different_serial_for_a_delivered_unit_flags_it(fake_digiflazz, delivered_unit, post_digiflazz_callback):
    post_digiflazz_callback({"data": {"ref_id": delivered_unit.reference, "status": "Sukses", "rc": "00", "sn": "X"}})
    assert "serial X" in OrderFlag.objects.get().reason


def test_flags_show_on_the_order_and_in_their_own_list(
    fake_digiflazz, delivered_unit, post_digiflazz_callback, admin_client
):
    post_digiflazz_callback({"data": {"ref_id": delivered_unit.reference, "status": "Gagal", "rc": "74"}})
    flag = OrderFlag.objects.get()
    order_page = admin_client.get(reverse("admin:orders_order_change", args=[delivered_unit.order_id]))
    assert flag.reason[:40] in order_page.content.decode()
    flagged = admin_client.get(reverse("admin:orders_order_changelist") + "?attention=flagged")
    assert f">{delivered_unit.order.public_id}<" in flagged.content.decode()  # listed by its number

    response = admin_client.post(
        reverse("admin:fulfillment_orderflag_changelist"),
        {"action": "resolve_flags", "_selected_action": [flag.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert OrderFlag.objects.get().resolved_by == "admin"


def test_without_a_secret_nothing_from_a_callback_is_recorded(
    fake_digiflazz, delivered_unit, post_digiflazz_callback, settings
):
    settings.DIGIFLAZZ_WEBHOOK_SECRET = ""  # unsigned: it only queues a status check of an open unit
    before = DeliveryAttempt.objects.count()
    post_digiflazz_callback({"data": {"ref_id": delivered_unit.reference, "status": "Gagal", "rc": "74"}}, secret="")
    assert DeliveryAttempt.objects.count() == before
    assert not OrderFlag.objects.exists()


def test_a_callback_for_an_unsent_reference_is_not_recorded(fake_digiflazz, digiflazz_order, post_digiflazz_callback):
    order = digiflazz_order()
    unit = Delivery.objects.get(order=order)
    Delivery.objects.filter(pk=unit.pk).update(provider="digiflazz", next_attempt_at=timezone.now() + timedelta(1))
    post_digiflazz_callback({"data": {"ref_id": unit.reference, "status": "Sukses", "rc": "00"}})
    assert not DeliveryAttempt.objects.exists()
