"""A deposit halt lifts as far as the deposit covers the units waiting behind it, oldest first:
a partial top-up releases only the units it pays for, the rest stay held (never failed, refunded
or charged an attempt) with the reason on the unit, and the next balance seen releases them."""

from __future__ import annotations

import pytest
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryAttempt, DeliveryStatus, ProviderHalt
from fulfillment.services import fulfill_order, paid_orders_reconcile, provider_accounts_check
from fulfillment.services.funding import WaitingUnit, deposit_plan, deposit_shortfalls
from orders.models import Order, OrderItem, Product
from tests.conftest import let_time_pass

PRICE = 10000  # what FakeDigiflazz charges for every unit


# --- the plan, on its own ---------------------------------------------------------------------


def _units(*costs, released=()):
    return [WaitingUnit(pk=pk, order_id=pk, cost=cost, released=pk in released) for pk, cost in enumerate(costs, 1)]


def test_the_oldest_units_the_balance_covers_go_first():
    plan = deposit_plan(_units(100, 100, 100), balance=250, topped_up=True)
    assert [u.pk for u in plan.release] == [1, 2]
    assert [u.pk for u in plan.held] == [3]
    assert (plan.released_cost, plan.held_cost, plan.shortfall) == (200, 100, 50)


def test_a_unit_that_does_not_fit_is_skipped_and_a_cheaper_younger_one_goes():
    plan = deposit_plan(_units(300, 100, 400, 50), balance=200, topped_up=True)
    assert [u.pk for u in plan.release] == [2, 4]
    assert [u.pk for u in plan.held] == [1, 3]
    assert plan.shortfall == 650  # 150 released and 700 held, against 200 seen


def test_the_oldest_unit_goes_first_as_soon_as_a_balance_covers_it():
    # It was skipped while the balance was short; now the balance covers it but not the younger one.
    plan = deposit_plan(_units(300, 100), balance=300, topped_up=True)
    assert [u.pk for u in plan.release] == [1]


def test_units_released_earlier_and_not_bought_yet_are_paid_first():
    plan = deposit_plan(_units(100, 100, 100, released=(1,)), balance=200, topped_up=True)
    assert (plan.committed, [u.pk for u in plan.release], [u.pk for u in plan.held]) == (100, [2], [3])


def test_less_than_the_cheapest_unit_releases_nothing():
    plan = deposit_plan(_units(100, 200), balance=99, topped_up=True)
    assert plan.release == () and plan.shortfall == 201


def test_units_of_unknown_price_go_only_after_every_priced_unit_and_a_top_up():
    # Priced units still held: the unknown one waits even though something is left.
    plan = deposit_plan(_units(None, 500, 100), balance=200, topped_up=True)
    assert [u.pk for u in plan.release] == [3]
    assert [u.pk for u in plan.held] == [1, 2]
    assert plan.held_unknown == 1

    # Every priced unit covered, something left, a top-up since the halt: the unknown ones go too.
    plan = deposit_plan(_units(None, 100, None), balance=150, topped_up=True)
    assert [u.pk for u in plan.release] == [2, 1, 3] and plan.held == ()

    # The same balance, but no top-up seen since the halt began: nothing shows they are covered.
    plan = deposit_plan(_units(None, None), balance=150, topped_up=False)
    assert plan.release == ()
    # Nothing left after the priced ones.
    plan = deposit_plan(_units(100, None), balance=100, topped_up=True)
    assert [u.pk for u in plan.held] == [2]


# --- with the engine and a fake Digiflazz -----------------------------------------------------


@pytest.fixture
def priced(product_factory):
    """The xld10 product, priced by the last price-list sync."""
    return product_factory(sku="xld10", name="XL 10k", provider_price=PRICE)


@pytest.fixture
def halted_with_waiting(fake_digiflazz, digiflazz_order, priced):
    """The deposit ran out (rc 44): 4 orders, 5 units in all, wait behind the halt."""
    fake_digiflazz.deposit = 3000
    fake_digiflazz.answer("0811", status="Gagal", rc="44", message="Saldo tidak cukup")
    orders = [digiflazz_order(recipient="0811", quantity=quantity) for quantity in (2, 1, 1, 1)]
    for order in orders:
        fulfill_order(order.pk)
    assert ProviderHalt.objects.get().code == "44"
    assert len(fake_digiflazz.transaction_calls) == 1
    fake_digiflazz.answer("0811", status="Sukses", rc="00")  # purchases go through once paid for
    return orders


def _all_units(orders):
    return list(Delivery.objects.filter(order__in=orders).order_by("pk"))


def _work(orders):
    """What the workers would do: a reconciliation sweep and a run of every order."""
    paid_orders_reconcile()
    for order in Order.objects.filter(pk__in=[order.pk for order in orders], status="paid"):
        fulfill_order(order.pk)


@pytest.mark.django_db
def test_an_item_keeps_the_provider_price_it_was_sold_at(priced, digiflazz_order, fake_digiflazz):
    order = digiflazz_order()
    Product.objects.filter(pk=priced.pk).update(provider_price=99999)
    assert OrderItem.objects.get(order=order).provider_price == PRICE


@pytest.mark.django_db
def test_a_partial_top_up_releases_only_the_units_it_covers(fake_digiflazz, halted_with_waiting):
    orders = halted_with_waiting
    fake_digiflazz.deposit = 25000  # two units' worth
    [report] = provider_accounts_check()

    assert (report.halted, report.lifted) == (True, False)
    halt = ProviderHalt.objects.get()
    assert "2 unit(s) released" in halt.check_result and "top up at least 25,000 more" in halt.check_result
    units = _all_units(orders)
    assert [u.released_at is not None for u in units] == [True, True, False, False, False]
    assert all("does not cover this unit" in u.last_message for u in units[2:])

    for _ in range(3):  # however often the workers look, only the released units are bought
        _work(orders)
        let_time_pass(order__in=orders)
    units = _all_units(orders)
    assert [u.status for u in units] == ["delivered", "delivered", "waiting", "waiting", "waiting"]
    assert len(fake_digiflazz.transaction_calls) == 1 + 2
    assert [u.purchase_attempts for u in units[2:]] == [0, 0, 0]
    assert Order.objects.get(pk=orders[0].pk).status == "fulfilled"
    assert {Order.objects.get(pk=o.pk).status for o in orders[1:]} == {"paid"}  # held, never refunded
    assert not DeliveryAttempt.objects.filter(outcome="failed").exclude(code="44").exists()

    fake_digiflazz.deposit = 5000 + 40000  # what was left, and a top-up of 40,000: covers the rest
    [report] = provider_accounts_check()
    assert report.lifted and not ProviderHalt.objects.exists()
    _work(orders)
    assert {u.status for u in _all_units(orders)} == {DeliveryStatus.DELIVERED}
    assert len(fake_digiflazz.transaction_calls) == 1 + 5  # every unit bought once, no rc 44 burst


@pytest.mark.django_db
def test_a_balance_below_the_cheapest_unit_lifts_nothing(fake_digiflazz, halted_with_waiting):
    orders = halted_with_waiting
    fake_digiflazz.deposit = PRICE - 1  # a top-up, but not enough for one unit
    [report] = provider_accounts_check()
    assert not report.lifted
    assert not Delivery.objects.filter(released_at__isnull=False).exists()
    _work(orders)
    assert len(fake_digiflazz.transaction_calls) == 1


@pytest.mark.django_db
def test_orders_paid_during_the_halt_wait_behind_the_older_ones(fake_digiflazz, halted_with_waiting, digiflazz_order):
    orders = halted_with_waiting
    newer = digiflazz_order(recipient="0811")
    fulfill_order(newer.pk)  # held by the halt, not sent
    fake_digiflazz.deposit = 50000  # the 5 older units exactly
    provider_accounts_check()
    assert ProviderHalt.objects.exists()
    assert not Delivery.objects.get(order=newer).released_at
    assert Delivery.objects.filter(order__in=orders, released_at__isnull=False).count() == 5
    assert "does not cover" in Delivery.objects.get(order=newer).last_message


@pytest.mark.django_db
def test_a_released_unit_refused_for_the_deposit_is_held_again_without_using_an_attempt(
    fake_digiflazz, halted_with_waiting
):
    orders = halted_with_waiting
    fake_digiflazz.deposit = 10000
    provider_accounts_check()
    first = _all_units(orders)[0]
    assert first.released_at is not None
    fake_digiflazz.answer("0811", status="Gagal", rc="44", message="Saldo tidak cukup")  # the price went up
    fulfill_order(orders[0].pk)
    first.refresh_from_db()
    assert (first.status, first.released_at, first.purchase_attempts) == (DeliveryStatus.WAITING, None, 0)
    assert ProviderHalt.objects.exists()
    assert len(fake_digiflazz.transaction_calls) == 2  # the second unit of that order was not released


@pytest.mark.django_db
def test_a_unit_without_a_price_counts_at_its_max_price(fake_digiflazz, digiflazz_order, product_factory):
    product_factory(sku="xld10", name="XL 10k", max_provider_price=12000)  # never synced
    fake_digiflazz.deposit = 0
    fake_digiflazz.answer("0811", status="Gagal", rc="44")
    order = digiflazz_order(recipient="0811", quantity=2)
    fulfill_order(order.pk)
    fake_digiflazz.deposit = 20000  # two units at 10,000 would fit, two at the max price would not
    [report] = provider_accounts_check()
    assert not report.lifted
    assert [u.released_at is not None for u in _all_units([order])] == [True, False]
    [shortfall] = deposit_shortfalls()
    assert (shortfall.held_units, shortfall.held_cost, shortfall.released_units, shortfall.needed) == (
        1,
        12000,
        1,
        4000,
    )


@pytest.mark.django_db
def test_the_dashboard_numbers_of_a_deposit_halt(fake_digiflazz, halted_with_waiting):
    fake_digiflazz.deposit = 3000
    provider_accounts_check()
    [shortfall] = deposit_shortfalls()
    assert (shortfall.provider, shortfall.balance, shortfall.held_units, shortfall.held_unknown) == (
        "digiflazz",
        3000,
        5,
        0,
    )
    assert (shortfall.held_cost, shortfall.needed) == (50000, 47000)
    assert shortfall.balance_checked_at <= timezone.now()


@pytest.mark.django_db
def test_a_probe_that_goes_through_releases_only_what_its_answer_s_balance_covers(fake_digiflazz, halted_with_waiting):
    orders = halted_with_waiting
    fake_digiflazz.deposit = 30000  # the probe's answer reports 20,000 left after its purchase
    ProviderHalt.objects.update(next_probe_at=timezone.now())
    let_time_pass(order__in=orders)
    fulfill_order(orders[0].pk)  # unit 1 is the probe; unit 2 (the same order) then passes released

    assert ProviderHalt.objects.exists()
    units = _all_units(orders)
    assert [u.status for u in units[:2]] == ["delivered", "delivered"]
    assert [u.released_at is not None for u in units[2:]] == [True, False, False]
