"""The data of `make bench-scale` follows the models: every field the loader does not name gets
what the ORM would give it, and a field it cannot fill is named with the fix."""

from __future__ import annotations

import pytest

from bench import scale_data
from bench.scale_data import LoaderOutdated, TableLoad, columns_plan

ALL_LOADS = (*scale_data.TABLES, scale_data.WEBHOOK_ORDERS, scale_data.WEBHOOK_ITEMS)


@pytest.mark.parametrize("load", ALL_LOADS, ids=lambda load: load.label)
def test_every_column_of_every_table_is_filled(load):
    plan = {column.column: column for column in columns_plan(load)}

    from django.apps import apps

    model = apps.get_model(load.model)
    for field in model._meta.concrete_fields:
        if field.primary_key and field.column not in plan:
            continue  # the identity column
        if field.null and field.column not in plan:
            continue  # NULL, as the ORM would leave it
        assert field.column in plan, f"{load.model}.{field.name} would be left out of the INSERT"


def test_unlisted_fields_get_the_orm_defaults():
    plan = {column.column: column for column in columns_plan(scale_data.PRODUCTS)}

    assert (plan["is_active"].kind, plan["is_active"].value) == ("value", True)  # default=True
    assert plan["created_at"].kind == "now"  # auto_now_add
    assert plan["updated_at"].kind == "now"  # auto_now
    assert "provider_price" not in plan  # nullable: NULL
    assert plan["sku"].kind == "sql"


def test_a_not_null_field_without_default_is_named_with_the_fix():
    # An item without its price: the loader cannot invent one.
    incomplete = TableLoad(
        label="items",
        model="orders.OrderItem",
        source="generate_series(1, 1) AS g",
        columns={"order_id": "g", "product_id": "1", "recipient": "'x'"},
    )

    with pytest.raises(LoaderOutdated, match=r"orders\.OrderItem\.unit_price_kopecks is NOT NULL without a default"):
        columns_plan(incomplete)


def test_a_unique_field_left_to_its_default_is_named_with_the_fix():
    # A default is one value for a million rows: the public id must be given per row.
    without_ids = TableLoad(
        label="orders",
        model="orders.Order",
        source="generate_series(1, 2) AS g",
        columns={"status": "'new'", "amount_kopecks": "100", "access_token": "md5(g::text)"},
    )

    with pytest.raises(LoaderOutdated, match=r"orders\.Order\.public_id is unique"):
        columns_plan(without_ids)


def test_a_field_removed_from_the_model_is_named():
    stale = TableLoad(label="orders", model="orders.Order", source="x", columns={"no_such_column": "1"})

    with pytest.raises(LoaderOutdated, match="has no field 'no_such_column'"):
        columns_plan(stale)


def test_the_sql_uses_no_percent_operator():
    # `%(name)s` are parameters; a bare % (modulo) would break the statement at run time.
    import re

    for load in ALL_LOADS:
        texts = [load.source, *load.columns.values()]
        for text in texts:
            assert not re.search(r"%(?!\(\w+\)s)", text), f"{load.label}: use mod() instead of % in {text!r}"
