"""A unit's reference is replaced only after its purchase failed for good, never on an answer
about something else: a refused status check, a stale callback, a rate limit."""

from __future__ import annotations

import pytest
from django.utils import timezone

from fulfillment.models import AttemptKind, Delivery, DeliveryStatus, ProviderHalt
from fulfillment.providers.base import FailureScope, FulfillmentResult
from fulfillment.services import (
    OrderNotFulfillable,
    delivery_record_result,
    fulfill_order,
    order_fulfillment_reset_for_retry,
    provider_resume,
)
from orders.services import order_refund
from tests.conftest import let_time_pass


def _make_due(order) -> None:
    let_time_pass(order=order)


def _recheck(order_id: int) -> Delivery:
    """Run the order again once its pending unit is due; return the unit as it ends up."""
    let_time_pass(order_id=order_id)
    fulfill_order(order_id)
    return Delivery.objects.get(order_id=order_id)


def test_refused_status_check_halts_but_keeps_the_reference(fake_digiflazz, pending_unit):
    first = pending_unit
    good_key, fake_digiflazz.api_key = fake_digiflazz.api_key, "rotated-in-the-panel"  # rc 41 from now on
    unit = _recheck(first.order_id)
    assert (unit.status, unit.reference) == (DeliveryStatus.PENDING, first.reference)
    assert ProviderHalt.objects.filter(provider="digiflazz").exists()

    # The first purchase went through meanwhile; staff fix the key and lift the halt.
    fake_digiflazz.settle(first.reference, status="Sukses", rc="00", sn="SN-FIRST")
    fake_digiflazz.api_key = good_key
    provider_resume(provider="digiflazz")
    unit = _recheck(first.order_id)
    assert (unit.status, unit.serial) == (DeliveryStatus.DELIVERED, "SN-FIRST")
    assert {body["ref_id"] for body in fake_digiflazz.transaction_calls} == {first.reference}


@pytest.mark.parametrize("rc", ["83", "85", "86"])
def test_rate_limited_status_check_stays_pending_on_its_reference(fake_digiflazz, pending_unit, rc):
    fake_digiflazz.settle(pending_unit.reference, status="Gagal", rc=rc)
    unit = _recheck(pending_unit.order_id)
    assert (unit.status, unit.reference) == (DeliveryStatus.PENDING, pending_unit.reference)


def test_stale_callback_cannot_replace_a_reference_in_flight(scripted_provider, paid_order_factory):
    order = paid_order_factory()
    sku = order.items.get().product.sku
    seen_by_callback = {}

    def second_purchase(params):
        # While the second purchase is out, a callback about the first (read before it was
        # replaced) finally writes "failed": it must not touch the unit's new reference.
        delivery_record_result(
            unit=seen_by_callback["unit"],
            result=FulfillmentResult.failed(scope=FailureScope.RETRYABLE, code="02"),
            kind=AttemptKind.CALLBACK,
            provider_name="scripted",
            claim_token=None,
            started_at=timezone.now(),
            duration_ms=0,
        )
        return FulfillmentResult.delivered(serial="SER-2")

    scripted_provider.script(
        sku,
        FulfillmentResult.pending(code="03"),  # first purchase
        FulfillmentResult.failed(scope=FailureScope.RETRYABLE, code="02"),  # its check: failed for good
        second_purchase,
    )
    fulfill_order(order.pk)
    seen_by_callback["unit"] = Delivery.objects.get(order=order)
    for _ in range(2):
        _make_due(order)
        fulfill_order(order.pk)
    _make_due(order)
    with pytest.raises(OrderNotFulfillable):
        fulfill_order(order.pk)  # fulfilled by the second purchase: nothing left to buy

    purchases = [reference for kind, reference in scripted_provider.calls_for(sku) if kind == "fulfill"]
    unit = Delivery.objects.get(order=order)
    assert len(purchases) == 2 and purchases[-1] == unit.reference
    assert (unit.status, unit.serial) == (DeliveryStatus.DELIVERED, "SER-2")


def test_failed_purchase_of_a_refunded_order_is_cancelled_not_requeued(scripted_provider, paid_order_factory):
    order = paid_order_factory()
    sku = order.items.get().product.sku
    scripted_provider.script(
        sku, FulfillmentResult.pending(code="03"), FulfillmentResult.failed(scope=FailureScope.RETRYABLE, code="02")
    )
    fulfill_order(order.pk)
    order_refund(order_id=order.pk)
    _make_due(order)
    fulfill_order(order.pk)
    assert Delivery.objects.get(order=order).status == DeliveryStatus.CANCELLED


@pytest.mark.parametrize("rc", ["47", "49", "50"])
def test_staff_retry_holds_units_the_provider_says_may_exist(fake_digiflazz, pending_unit, rc):
    fake_digiflazz.settle(pending_unit.reference, status="Gagal", rc=rc)
    assert _recheck(pending_unit.order_id).status == DeliveryStatus.FAILED

    decision = order_fulfillment_reset_for_retry(order_id=pending_unit.order_id)
    assert decision.held_unknown == 1 and not decision.queued
    assert Delivery.objects.get(pk=pending_unit.pk).reference == pending_unit.reference


def test_unit_of_an_unregistered_provider_is_postponed_without_stopping_the_run(scripted_provider, paid_order_factory):
    order = paid_order_factory(quantities=(1, 1))
    orphan, other = Delivery.objects.filter(order=order).order_by("item_id")
    Delivery.objects.filter(pk=orphan.pk).update(status=DeliveryStatus.PENDING, provider="retired-supplier")
    report = fulfill_order(order.pk)
    orphan.refresh_from_db()
    other.refresh_from_db()
    assert other.status == DeliveryStatus.DELIVERED
    assert orphan.status == DeliveryStatus.PENDING and orphan.claim_token == ""
    assert orphan.next_attempt_at > timezone.now()
    assert "retired-supplier" in report.skipped
