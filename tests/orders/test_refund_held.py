"""Refunding units a halt or pause holds: stopped and refunded in one transaction, all or nothing."""

from __future__ import annotations

import pytest

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.services import product_pause, provider_halt
from orders.models import Payment, Refund
from orders.services.refunds import RefundNotPossible, refund_decide_undelivered, undelivered_units_preview

pytestmark = pytest.mark.django_db


@pytest.fixture
def held_order(paid_order_factory):
    order = paid_order_factory(quantities=(2, 1), price=10000)
    Payment.objects.create(
        order=order, payment_id="8742591", amount_kopecks=order.amount_kopecks, bank_status="CONFIRMED"
    )
    return order


def units(order) -> list[tuple[str, int | None]]:
    return list(Delivery.objects.filter(order=order).order_by("pk").values_list("status", "refund_id"))


def test_without_consent_held_units_are_listed_and_not_refunded(held_order):
    provider_halt(provider="mock", code="41", reason="Signature rejected.")

    preview = undelivered_units_preview(order_id=held_order.pk)
    assert len(preview.waiting_held) == 3 and not preview.units and "confirm stopping" in preview.problem
    with pytest.raises(RefundNotPossible, match="held by a paused product or a halted provider"):
        refund_decide_undelivered(order_id=held_order.pk, decided_by="anna")
    assert units(held_order) == [("waiting", None)] * 3


def test_a_halt_s_units_are_stopped_and_refunded_with_the_failed_one(held_order):
    provider_halt(provider="mock", code="41", reason="Signature rejected.")
    failed = Delivery.objects.filter(order=held_order).order_by("pk").last()
    Delivery.objects.filter(pk=failed.pk).update(
        status=DeliveryStatus.FAILED, failure_scope="permanent", last_code="02"
    )

    preview = undelivered_units_preview(order_id=held_order.pk, include_held=True)
    assert preview.amount_kopecks == 30000 and not preview.problem

    refund = refund_decide_undelivered(order_id=held_order.pk, decided_by="anna", include_held=True)

    assert refund.amount_kopecks == 30000 and refund.full
    assert units(held_order) == [("refunding", refund.pk)] * 3


def test_only_the_paused_product_s_units_are_refunded(paid_order_factory):
    order = paid_order_factory(quantities=(1, 1), price=10000)
    Payment.objects.create(
        order=order, payment_id="8742591", amount_kopecks=order.amount_kopecks, bank_status="CONFIRMED"
    )
    first_item, second_item = order.items.order_by("pk")
    Delivery.objects.filter(item=second_item).update(status=DeliveryStatus.DELIVERED, serial="CODE-1")
    product_pause(provider="mock", sku=first_item.sku, code="out_of_stock", reason="Out of stock.")

    refund = refund_decide_undelivered(order_id=order.pk, decided_by="anna", include_held=True)

    assert refund.amount_kopecks == 10000 and not refund.full
    assert dict(Delivery.objects.filter(order=order).values_list("item_id", "status")) == {
        first_item.pk: "refunding",
        second_item.pk: "delivered",
    }


def test_a_unit_still_being_bought_refuses_the_refund_and_nothing_is_stopped(held_order):
    provider_halt(provider="mock", code="41", reason="Signature rejected.")
    pending = Delivery.objects.filter(order=held_order).order_by("pk").first()
    Delivery.objects.filter(pk=pending.pk).update(status=DeliveryStatus.PENDING, provider="mock")

    with pytest.raises(RefundNotPossible, match="still being delivered"):
        refund_decide_undelivered(order_id=held_order.pk, decided_by="anna", include_held=True)

    assert units(held_order) == [("pending", None), ("waiting", None), ("waiting", None)]
    assert not Refund.objects.exists()
