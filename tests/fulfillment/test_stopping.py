"""Stopping units that a halt or a pause holds, so staff can refund them: only WAITING units of a
held product or provider, never a unit a worker has moved on, and only inside a transaction."""

from __future__ import annotations

import pytest
from django.db import transaction

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.selectors import STOPPED_CODE, held_units
from fulfillment.services import product_pause, provider_halt, units_stop_held

pytestmark = pytest.mark.django_db


def statuses(order) -> list[str]:
    return list(Delivery.objects.filter(order=order).order_by("pk").values_list("status", flat=True))


def test_nothing_is_held_without_a_halt_or_pause(paid_order_factory):
    order = paid_order_factory(quantities=(2,))
    with transaction.atomic():
        assert units_stop_held(order_id=order.pk, stopped_by="anna") == []
    assert statuses(order) == ["waiting", "waiting"]


def test_units_of_a_paused_product_are_stopped_and_others_left(paid_order_factory):
    order = paid_order_factory(quantities=(2,))
    paused_sku = order.items.get().sku
    product_pause(provider="mock", sku=paused_sku, code="out_of_stock", reason="Out of stock.")
    other = paid_order_factory()

    with transaction.atomic():
        stopped = units_stop_held(order_id=order.pk, stopped_by="anna")

    assert len(stopped) == 2
    units = Delivery.objects.filter(order=order)
    assert {(unit.status, unit.last_code) for unit in units} == {(DeliveryStatus.FAILED, STOPPED_CODE)}
    assert all("anna" in unit.last_message for unit in units)
    # Another order of the same product is not touched: only the order staff act on.
    assert statuses(other) == ["waiting"]


def test_units_of_a_halted_provider_are_held(paid_order_factory):
    order = paid_order_factory(quantities=(1, 1))
    provider_halt(provider="mock", code="41", reason="Signature rejected.")
    assert held_units(order_id=order.pk).count() == 2


def test_a_unit_a_worker_moved_on_is_never_stopped(paid_order_factory):
    order = paid_order_factory(quantities=(3,))
    product_pause(provider="mock", sku=order.items.get().sku, code="out_of_stock", reason="Out of stock.")
    sending, pending, waiting = Delivery.objects.filter(order=order).order_by("pk")
    Delivery.objects.filter(pk=sending.pk).update(status=DeliveryStatus.SENDING, provider="mock")
    Delivery.objects.filter(pk=pending.pk).update(status=DeliveryStatus.PENDING, provider="mock")

    with transaction.atomic():
        stopped = units_stop_held(order_id=order.pk, stopped_by="anna")

    assert stopped == [waiting.pk]
    assert statuses(order) == ["sending", "pending", "failed"]


@pytest.mark.django_db(transaction=True)
def test_stopping_outside_a_transaction_is_refused(paid_order_factory):
    order = paid_order_factory()
    product_pause(provider="mock", sku=order.items.get().sku, code="out_of_stock", reason="Out of stock.")
    before = statuses(order)
    with pytest.raises(RuntimeError, match="inside the transaction"):
        units_stop_held(order_id=order.pk, stopped_by="anna")
    assert statuses(order) == before
