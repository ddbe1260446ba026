"""Faults that are not the unit's are handled where they belong: a product fault pauses that
product, a shop-wide fault (deposit, credentials, rate limit) halts the provider. Units wait
without using their purchase attempts, and the halt or pause lifts once the periodic account
check or a probe purchase shows the fault gone; units an earlier version failed for such a fault
go back to waiting then."""

from __future__ import annotations

import importlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps as global_apps
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryAttempt, DeliveryStatus, ProductPause, ProviderAccount, ProviderHalt
from fulfillment.providers.base import FailureScope, FulfillmentResult
from fulfillment.services import (
    fulfill_order,
    paid_orders_reconcile,
    provider_accounts_check,
    provider_halt,
)
from fulfillment.services.halts import fault_probe_claim
from orders.models import Order, Product
from orders.services import ItemSpec, order_create, order_mark_paid
from tests.conftest import let_time_pass

pytestmark = pytest.mark.django_db


def _make_due(order: Order) -> None:
    let_time_pass(order=order)


def _units(order: Order) -> list[Delivery]:
    return list(Delivery.objects.filter(order=order).order_by("item_id", "unit_index"))


def _probe_due(model) -> None:
    model.objects.update(next_probe_at=timezone.now() - timedelta(seconds=1))


# --- the deposit runs out (Digiflazz rc 44) ---------------------------------------------------------


@pytest.fixture
def deposit_ran_out(fake_digiflazz, digiflazz_order):
    """An order of 3 units whose first purchase met an empty deposit (rc 44)."""
    fake_digiflazz.deposit = 5000
    fake_digiflazz.answer("0811", status="Gagal", rc="44", message="Saldo tidak cukup")
    order = digiflazz_order(recipient="0811", quantity=3)
    fulfill_order(order.pk)
    return order


def test_an_empty_deposit_halts_the_provider_and_no_unit_uses_its_attempts(fake_digiflazz, deposit_ran_out, settings):
    order = deposit_ran_out
    halt = ProviderHalt.objects.get(provider="digiflazz")
    assert (halt.scope, halt.code, halt.lowest_balance) == ("shop", "44", 5000)
    assert "top it up" in halt.reason
    assert len(fake_digiflazz.transaction_calls) == 1  # the other two units were not sent

    for _ in range(settings.FULFILLMENT_MAX_PURCHASE_ATTEMPTS + 2):  # what used to burn every attempt
        _make_due(order)
        fulfill_order(order.pk)
        paid_orders_reconcile()

    assert len(fake_digiflazz.transaction_calls) == 1
    assert [(u.status, u.purchase_attempts) for u in _units(order)] == [(DeliveryStatus.WAITING, 0)] * 3
    refused = DeliveryAttempt.objects.get()
    assert (refused.outcome, refused.failure_scope, refused.code) == ("failed", "shop", "44")


def test_the_balance_check_lifts_the_halt_once_the_deposit_is_topped_up(fake_digiflazz, deposit_ran_out):
    order = deposit_ran_out
    [report] = provider_accounts_check()
    assert (report.halted, report.lifted) == (True, False)  # still 5,000: not enough
    halt = ProviderHalt.objects.get()
    assert halt.checked_at is not None and "5,000" in halt.check_result
    assert ProviderAccount.objects.get(provider="digiflazz").balance == 5000

    fake_digiflazz.deposit = 500000  # staff top up
    fake_digiflazz.answer("0811", status="Sukses", rc="00", sn="SN-OK")
    [report] = provider_accounts_check()

    assert report.lifted
    assert not ProviderHalt.objects.exists()
    assert ProviderAccount.objects.get(provider="digiflazz").balance == 500000
    assert all(u.next_attempt_at <= timezone.now() for u in _units(order))  # due at once
    fulfill_order(order.pk)
    assert [(u.status, u.purchase_attempts) for u in _units(order)] == [(DeliveryStatus.DELIVERED, 1)] * 3
    assert Order.objects.get(pk=order.pk).status == "fulfilled"


def test_wrong_credentials_halt_until_the_balance_call_goes_through(fake_digiflazz, digiflazz_order, settings):
    good_key = settings.DIGIFLAZZ_API_KEY
    settings.DIGIFLAZZ_API_KEY = "rotated-away"
    order = digiflazz_order()
    fulfill_order(order.pk)
    assert ProviderHalt.objects.get().scope == "configuration"

    [report] = provider_accounts_check()  # the balance call is refused the same way (rc 41)
    assert not report.lifted
    assert ProviderAccount.objects.get(provider="digiflazz").check_ok is False

    settings.DIGIFLAZZ_API_KEY = good_key
    [report] = provider_accounts_check()
    assert report.lifted
    fulfill_order(order.pk)
    assert _units(order)[0].status == DeliveryStatus.DELIVERED


def test_a_rate_limit_halt_lifts_by_itself_once_its_minute_is_over(fake_digiflazz, digiflazz_order):
    fake_digiflazz.answer("0815", status="Gagal", rc="85", message="Limit")
    order = digiflazz_order(recipient="0815", quantity=2)
    before = timezone.now()
    fulfill_order(order.pk)
    halt = ProviderHalt.objects.get()
    assert halt.clears_at >= before + timedelta(seconds=60)
    assert len(fake_digiflazz.transaction_calls) == 1

    fake_digiflazz.answer("0815", status="Sukses", rc="00")
    ProviderHalt.objects.update(clears_at=timezone.now() - timedelta(seconds=1))  # the minute passed
    _make_due(order)
    fulfill_order(order.pk)
    assert not ProviderHalt.objects.exists()
    assert {u.status for u in _units(order)} == {DeliveryStatus.DELIVERED}


def test_a_rate_limited_status_check_halts_and_keeps_the_unit_pending(fake_digiflazz, pending_unit):
    fake_digiflazz.settle(pending_unit.reference, status="Gagal", rc="85")
    _make_due(pending_unit.order)
    fulfill_order(pending_unit.order_id)
    unit = Delivery.objects.get(pk=pending_unit.pk)
    assert (unit.status, unit.reference) == (DeliveryStatus.PENDING, pending_unit.reference)
    assert ProviderHalt.objects.get().code == "85"


def test_a_failure_for_lack_of_deposit_answered_to_a_check_is_final_for_that_purchase(fake_digiflazz, pending_unit):
    # The stored transaction failed for lack of deposit: nothing was bought under its ref_id.
    fake_digiflazz.settle(pending_unit.reference, status="Gagal", rc="44")
    _make_due(pending_unit.order)
    fulfill_order(pending_unit.order_id)
    unit = Delivery.objects.get(pk=pending_unit.pk)
    assert unit.status == DeliveryStatus.WAITING and unit.reference != pending_unit.reference
    assert unit.purchase_attempts == 0  # the deposit's fault, not the unit's
    assert ProviderHalt.objects.get().scope == "shop"


# --- a product fault (out of stock) ---------------------------------------------------------------


@pytest.fixture
def two_products(fake_digiflazz, product_factory):
    """A paid order of 2 units of an out-of-stock SKU (recipient 0811) and 1 unit of another."""
    empty = product_factory(sku="xld10")
    fine = product_factory(sku="xld25")
    fake_digiflazz.answer("0811", status="Gagal", rc="68", message="Stok kosong")
    order = order_create(
        items=[ItemSpec(product=empty, recipient="0811", quantity=2), ItemSpec(product=fine, recipient="0812")]
    )
    order_mark_paid(order_id=order.pk, payment_id="1")
    return order


def test_an_out_of_stock_product_pauses_only_that_product(fake_digiflazz, two_products):
    order = two_products
    fulfill_order(order.pk)

    pause = ProductPause.objects.get()
    assert (pause.provider, pause.sku, pause.code, pause.product.sku) == ("digiflazz", "xld10", "68", "xld10")
    assert not ProviderHalt.objects.exists()
    first, second, other = _units(order)
    assert other.status == DeliveryStatus.DELIVERED
    assert [(u.status, u.purchase_attempts) for u in (first, second)] == [(DeliveryStatus.WAITING, 0)] * 2
    assert [body["buyer_sku_code"] for body in fake_digiflazz.transaction_calls] == ["xld10", "xld25"]

    _make_due(order)
    fulfill_order(order.pk)
    assert len(fake_digiflazz.transaction_calls) == 2  # paused: nothing sent, nothing burned


def test_a_probe_tests_a_paused_product_with_one_purchase_and_lifts_the_pause(fake_digiflazz, two_products, settings):
    settings.FULFILLMENT_FAULT_PROBE_SECONDS = 300
    order = two_products
    fulfill_order(order.pk)

    _probe_due(ProductPause)
    _make_due(order)
    before = timezone.now()
    fulfill_order(order.pk)  # still out of stock: one probe, then a longer wait
    pause = ProductPause.objects.get()
    assert pause.probes == 1 and pause.next_probe_at >= before + timedelta(seconds=600)
    assert len(fake_digiflazz.transaction_calls) == 3
    assert [u.purchase_attempts for u in _units(order)[:2]] == [0, 0]

    fake_digiflazz.answer("0811", status="Sukses", rc="00")  # back in stock
    _probe_due(ProductPause)
    _make_due(order)
    fulfill_order(order.pk)
    assert not ProductPause.objects.exists()
    assert {u.status for u in _units(order)} == {DeliveryStatus.DELIVERED}
    assert Order.objects.get(pk=order.pk).status == "fulfilled"


def test_only_one_run_gets_to_probe(fake_digiflazz, deposit_ran_out):
    _probe_due(ProviderHalt)
    halt = ProviderHalt.objects.get()
    assert fault_probe_claim(halt) is True
    assert fault_probe_claim(halt) is False


def test_a_probe_that_goes_through_lifts_a_halt(fake_digiflazz, deposit_ran_out):
    order = deposit_ran_out
    fake_digiflazz.deposit = 500000  # topped up: the balance the probe's answer reports covers the rest
    fake_digiflazz.answer("0811", status="Sukses", rc="00")
    _probe_due(ProviderHalt)
    _make_due(order)
    fulfill_order(order.pk)
    assert not ProviderHalt.objects.exists()
    assert {u.status for u in _units(order)} == {DeliveryStatus.DELIVERED}


def test_a_halt_raised_by_another_run_stops_the_next_purchase_at_the_gate(scripted_provider, paid_order_factory):
    order = paid_order_factory(quantities=(1, 1))
    first_sku, second_sku = (item.sku for item in order.items.order_by("id"))

    def meanwhile(params):
        # Another order's run meets an empty deposit while this run is at its first unit.
        provider_halt(provider="scripted", code="44", reason="deposit", scope=FailureScope.SHOP)
        return FulfillmentResult.delivered(serial="S1")

    scripted_provider.script(first_sku, meanwhile)
    report = fulfill_order(order.pk)

    assert scripted_provider.calls_for(second_sku) == []
    second = _units(order)[1]
    assert (second.status, second.purchase_attempts, second.claim_token) == (DeliveryStatus.WAITING, 0, "")
    assert second.next_attempt_at > timezone.now()
    assert report.units_delivered == 1


# --- units an earlier version failed for such a fault ------------------------------------------


def _relabel():
    [path] = Path(__file__).resolve().parents[2].glob("fulfillment/migrations/*_provider_faults.py")
    return importlib.import_module(f"fulfillment.migrations.{path.stem}").relabel_units_failed_by_faults


def _failed_by_an_empty_deposit(order: Order) -> Delivery:
    """What the old code left: 5 purchases burned on rc 44, the unit FAILED as 'retryable'."""
    Delivery.objects.filter(order=order).update(
        status=DeliveryStatus.FAILED,
        provider="digiflazz",
        failure_scope="retryable",
        last_code="44",
        purchase_attempts=5,
        purchase_no=5,
    )
    return _units(order)[0]


def test_the_migration_gives_old_fault_failures_their_scope(fake_digiflazz, digiflazz_order):
    order = digiflazz_order()
    _failed_by_an_empty_deposit(order)
    other = digiflazz_order()
    Delivery.objects.filter(order=other).update(status="failed", provider="digiflazz", last_code="54")

    _relabel()(global_apps, None)

    assert _units(order)[0].failure_scope == "shop"
    assert _units(other)[0].failure_scope == ""  # a wrong number stays the unit's own


def test_units_failed_by_a_fault_wait_for_the_halt_and_go_back_to_waiting_when_it_clears(
    fake_digiflazz, digiflazz_order, queued_deliveries
):
    order = digiflazz_order()
    old = _failed_by_an_empty_deposit(order)
    _relabel()(global_apps, None)
    fake_digiflazz.deposit = 0
    provider_halt(provider="digiflazz", code="44", reason="deposit", scope=FailureScope.SHOP, balance=0)

    paid_orders_reconcile()
    assert _units(order)[0].status == DeliveryStatus.FAILED  # the fault is still there

    fake_digiflazz.deposit = 250000
    [report] = provider_accounts_check()
    assert report.lifted
    unit = _units(order)[0]
    assert (unit.status, unit.purchase_attempts, unit.failure_scope) == (DeliveryStatus.WAITING, 0, "")
    assert unit.reference != old.reference  # its last purchase failed for good: a new one is safe
    fulfill_order(order.pk)
    assert _units(order)[0].status == DeliveryStatus.DELIVERED


def test_units_failed_by_a_fault_no_longer_active_are_sent_again_by_reconciliation(
    fake_digiflazz, digiflazz_order, queued_deliveries
):
    order = digiflazz_order()
    _failed_by_an_empty_deposit(order)
    refunded = digiflazz_order()
    _failed_by_an_empty_deposit(refunded)
    Order.objects.filter(pk=refunded.pk).update(status="refunded")
    _relabel()(global_apps, None)

    paid_orders_reconcile()

    assert _units(order)[0].status == DeliveryStatus.WAITING
    assert _units(refunded)[0].status == DeliveryStatus.FAILED  # never for an order that is not paid


# --- the Mock simulates both, for tests and demos ---------------------------------------------


def test_the_mock_simulates_an_empty_deposit_until_the_setting_is_unset(paid_order_factory, settings):
    settings.MOCK_FULFILLMENT_SHOP_FAULT = "deposit"
    order = paid_order_factory(quantities=(2,))
    fulfill_order(order.pk)
    halt = ProviderHalt.objects.get(provider="mock")
    assert (halt.scope, halt.code) == ("shop", "MOCK_DEPOSIT")
    [report] = provider_accounts_check()
    assert not report.lifted and ProviderAccount.objects.get(provider="mock").balance == 0

    settings.MOCK_FULFILLMENT_SHOP_FAULT = ""  # "topped up" (a restarted worker reads the setting)
    [report] = provider_accounts_check()
    assert report.lifted
    fulfill_order(order.pk)
    assert {u.status for u in _units(order)} == {DeliveryStatus.DELIVERED}


def test_the_mock_simulates_bad_credentials_and_an_out_of_stock_product(paid_order_factory, settings):
    settings.MOCK_FULFILLMENT_SHOP_FAULT = "credentials"
    order = paid_order_factory()
    fulfill_order(order.pk)
    assert ProviderHalt.objects.get().scope == "configuration"
    assert not provider_accounts_check()[0].lifted
    settings.MOCK_FULFILLMENT_SHOP_FAULT = ""
    assert provider_accounts_check()[0].lifted

    sku = Product.objects.get().sku
    settings.MOCK_FULFILLMENT_OUT_OF_STOCK_SKUS = [sku]
    _make_due(order)
    fulfill_order(order.pk)
    assert ProductPause.objects.get().sku == sku
    assert _units(order)[0].purchase_attempts == 0


def test_the_mock_refuses_an_unknown_fault_setting(settings):
    from fulfillment.registry import configuration_problems

    settings.MOCK_FULFILLMENT_SHOP_FAULT = "flood"
    assert any("MOCK_FULFILLMENT_SHOP_FAULT" in problem for problem in configuration_problems())


def test_halts_and_pauses_are_shown_to_staff_and_can_be_lifted_there(fake_digiflazz, two_products, admin_client):
    fulfill_order(two_products.pk)
    provider_halt(provider="digiflazz", code="44", reason="The Digiflazz deposit is too low", scope=FailureScope.SHOP)
    pause = ProductPause.objects.get()
    halt = ProviderHalt.objects.get()
    pages = {
        "halts": "/admin/fulfillment/providerhalt/",
        "halt": f"/admin/fulfillment/providerhalt/{halt.pk}/change/",
        "pauses": "/admin/fulfillment/productpause/",
        "pause": f"/admin/fulfillment/productpause/{pause.pk}/change/",
        "accounts": "/admin/fulfillment/provideraccount/",
    }
    for name, url in pages.items():
        response = admin_client.get(url)
        assert response.status_code == 200, name
    assert "The Digiflazz deposit is too low" in admin_client.get(pages["halts"]).content.decode()
    assert "out of stock" in admin_client.get(pages["pauses"]).content.decode()

    admin_client.post(f"/admin/fulfillment/productpause/{pause.pk}/delete/", {"post": "yes"})
    assert not ProductPause.objects.exists()
    held = [u for u in _units(two_products) if u.status == DeliveryStatus.WAITING]
    assert held and all(u.next_attempt_at <= timezone.now() for u in held)
