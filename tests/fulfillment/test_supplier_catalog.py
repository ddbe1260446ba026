"""When a supplier SKU can be bought: status, stock, failing, and the WIB cut-off window."""

from datetime import datetime, time, timedelta

import pytest

from fulfillment.supplier_catalog import WIB, SupplierSku, in_cut_off, sku_sellability


def wib(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 3, hour, minute, tzinfo=WIB)


def sku(**fields) -> SupplierSku:
    base = dict(
        provider="digiflazz",
        code="xld10",
        buyer_product_status=True,
        seller_product_status=True,
        unlimited_stock=True,
        in_price_list=True,
    )
    base.update(fields)
    return SupplierSku(**base)


@pytest.mark.parametrize(
    ("start", "end", "at", "ends"),
    [
        (time(23, 0), time(0, 30), wib(23, 30), datetime(2026, 12, 4, 0, 30, tzinfo=WIB)),  # wraps, before midnight
        (time(23, 0), time(0, 30), wib(0, 10), datetime(2026, 12, 3, 0, 30, tzinfo=WIB)),  # wraps, after midnight
        (time(23, 0), time(0, 30), wib(12, 0), None),
        (time(1, 0), time(2, 0), wib(1, 0), datetime(2026, 12, 3, 2, 0, tzinfo=WIB)),  # start is inside
        (time(1, 0), time(2, 0), wib(2, 0), None),  # end is outside
        (time(0, 0), time(0, 0), wib(0, 0), None),  # Digiflazz's "no window"
        (None, time(2, 0), wib(1, 0), None),
    ],
)
def test_cut_off_window(start, end, at, ends):
    assert in_cut_off(start=start, end=end, at=at) == ends


def test_cut_off_is_judged_in_wib_whatever_the_zone_of_the_instant():
    moscow_evening = wib(23, 30).astimezone(datetime.now().astimezone().tzinfo)
    assert in_cut_off(start=time(23, 0), end=time(0, 30), at=moscow_evening) is not None


def test_sellable_when_active_in_stock_and_outside_cut_off():
    assert sku_sellability(sku(), at=wib(12)).sellable


@pytest.mark.parametrize(
    "fields",
    [
        {"in_price_list": False},
        {"buyer_product_status": False},
        {"seller_product_status": False},
        {"unlimited_stock": False, "stock": 0},
        {"unlimited_stock": False, "stock": None},
    ],
)
def test_not_sellable_without_a_time_to_come_back(fields):
    verdict = sku_sellability(sku(**fields), at=wib(12))
    assert not verdict.sellable and verdict.reason and verdict.again_at is None


def test_limited_stock_left_is_sellable():
    assert sku_sellability(sku(unlimited_stock=False, stock=3), at=wib(12)).sellable


def test_in_cut_off_says_when_it_ends():
    verdict = sku_sellability(sku(start_cut_off=time(11, 0), end_cut_off=time(13, 0)), at=wib(12))
    assert not verdict.sellable
    assert verdict.again_at == wib(13)


def test_failing_sku_comes_back_when_the_failure_window_ends():
    until = wib(12) + timedelta(minutes=10)
    verdict = sku_sellability(sku(failing_until=until), at=wib(12))
    assert (verdict.sellable, verdict.again_at) == (False, until)
    assert sku_sellability(sku(failing_until=until), at=until).sellable
