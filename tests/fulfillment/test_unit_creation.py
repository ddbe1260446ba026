"""deliveries_create: the units of an order being paid. On PostgreSQL one INSERT ... SELECT (the
webhook's hot path), elsewhere through the ORM; both must leave the same rows."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.services import deliveries_create
from orders.models import OrderItem

pytestmark = pytest.mark.django_db

SET_FROM_THE_UNIT = {"id", "order", "item", "unit_index", "unit_key", "reference", "next_attempt_at", "queued_at"}


def test_one_unit_per_quantity_with_its_key_and_a_fresh_reference(order_factory):
    order = order_factory(quantities=(1, 3))
    before = timezone.now()

    created = deliveries_create(order_id=order.pk)

    items = list(OrderItem.objects.filter(order=order).order_by("id").values_list("id", "quantity"))
    units = list(Delivery.objects.filter(order=order).order_by("id"))
    assert created == 4 == len(units)
    assert [(unit.item_id, unit.unit_index) for unit in units] == [
        (item_id, index) for item_id, quantity in items for index in range(quantity)
    ]
    assert [unit.unit_key for unit in units] == [f"{order.pk}-{u.item_id}-{u.unit_index}" for u in units]
    # Like new_reference(): 24 hex digits of a random UUID, every one different.
    assert all(re.fullmatch(r"[0-9a-f]{24}", unit.reference) for unit in units)
    assert len({unit.reference for unit in units}) == 4
    assert all(unit.status == DeliveryStatus.WAITING for unit in units)
    assert all(unit.next_attempt_at >= before and unit.queued_at == unit.next_attempt_at for unit in units)


def test_every_other_column_gets_what_the_orm_would_give_it(order_factory):
    """A column added to Delivery later gets its default on both paths (or the path fails here)."""
    order = order_factory(quantities=(2,))
    before = timezone.now()

    deliveries_create(order_id=order.pk)

    unit = Delivery.objects.filter(order=order).first()
    for field in Delivery._meta.concrete_fields:
        if field.name in SET_FROM_THE_UNIT:
            continue
        value = getattr(unit, field.attname)
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            assert value >= before, field.name
        else:
            assert value == field.get_default(), (connection.vendor, field.name)


def test_creating_again_keeps_the_units_and_their_references(order_factory):
    order = order_factory(quantities=(2, 1))
    deliveries_create(order_id=order.pk)
    first = dict(Delivery.objects.filter(order=order).values_list("unit_key", "reference"))

    assert deliveries_create(order_id=order.pk) == 3

    assert dict(Delivery.objects.filter(order=order).values_list("unit_key", "reference")) == first


def test_an_order_without_items_has_no_units(order_factory):
    order = order_factory()
    OrderItem.objects.filter(order=order).delete()

    assert deliveries_create(order_id=order.pk) == 0
    assert not Delivery.objects.filter(order=order).exists()
