"""Operator tools: `digiflazz_balance`, `sync_digiflazz_products`, and what the admin shows of them."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from fulfillment.models import ProviderAccount
from orders.admin_catalogue import ProductForm
from orders.models import Product

pytestmark = pytest.mark.django_db


def run(command: str) -> str:
    out = StringIO()
    call_command(command, stdout=out)
    return out.getvalue()


def item(sku: str, *, name: str = "", price: int = 10000, buyer: bool = True, seller: bool = True) -> dict:
    return {
        "product_name": name or f"Product {sku}",
        "category": "Pulsa",
        "brand": "XL",
        "type": "Umum",
        "seller_name": "Seller",
        "price": price,
        "buyer_sku_code": sku,
        "buyer_product_status": buyer,
        "seller_product_status": seller,
        "unlimited_stock": True,
        "stock": 0,
        "multi": True,
        "start_cut_off": "0:0",
        "end_cut_off": "0:0",
        "desc": "-",
    }


def _allow_next_pull() -> None:
    ProviderAccount.objects.filter(provider="digiflazz").update(
        price_list_requested_at=timezone.now() - timedelta(minutes=5, seconds=1)
    )


# --- balance ------------------------------------------------------------------------------------------


def test_balance_is_printed_and_remembered(fake_digiflazz):
    fake_digiflazz.deposit = 1234567
    output = run("digiflazz_balance")

    assert "1,234,567" in output
    account = ProviderAccount.objects.get(provider="digiflazz")
    assert account.balance == 1234567
    assert account.balance_checked_at is not None
    [(path, body)] = fake_digiflazz.calls
    assert (path, body["cmd"]) == ("/cek-saldo", "deposit")


def test_balance_with_a_wrong_key_says_what_to_fix(fake_digiflazz, digiflazz_settings):
    digiflazz_settings.DIGIFLAZZ_API_KEY = "wrong-key-123"
    with pytest.raises(CommandError, match="DIGIFLAZZ_API_KEY") as excinfo:
        run("digiflazz_balance")
    assert "wrong-key-123" not in str(excinfo.value)
    assert not ProviderAccount.objects.filter(balance__isnull=False).exists()


def test_balance_without_credentials_names_them(digiflazz_settings, db):
    digiflazz_settings.DIGIFLAZZ_USERNAME = ""
    with pytest.raises(CommandError, match="DIGIFLAZZ_USERNAME"):
        run("digiflazz_balance")


def test_balance_when_digiflazz_is_unreachable(fake_digiflazz):
    import responses

    fake_digiflazz.deposit = "not a number"
    with pytest.raises(CommandError, match="not a number"):
        run("digiflazz_balance")
    with responses.RequestsMock():  # nothing registered: the connection is refused
        with pytest.raises(CommandError, match="Could not get the Digiflazz balance"):
            run("digiflazz_balance")


# --- price list ---------------------------------------------------------------------------------------


def test_sync_creates_updates_and_disables(fake_digiflazz, product_factory):
    kept = product_factory(
        sku="xld10", name="XL 10k", price_kopecks=15000, provider_price=10000, provider_available=True
    )
    repriced = product_factory(sku="xld25", name="XL 25k", provider_price=24000, provider_available=True)
    gone = product_factory(sku="old5", name="Old 5k", provider_available=True)
    back = product_factory(sku="tsel5", name="Telkomsel 5k", provider_price=5500, provider_available=False)
    fake_digiflazz.price_list = [
        item("xld10", price=10000),
        item("xld25", price=25100),
        item("tsel5", price=5500),
        item("axis5", name="Axis 5.000", price=5600, seller=False),
        item("indosat10", name="Indosat 10.000", price=10400),
    ]
    output = run("sync_digiflazz_products")

    [(path, body)] = fake_digiflazz.calls
    assert (path, body["cmd"]) == ("/price-list", "prepaid")
    kept.refresh_from_db()
    assert (kept.provider_price, kept.provider_available, kept.price_kopecks) == (10000, True, 15000)
    assert kept.provider_synced_at is not None
    repriced.refresh_from_db()
    assert repriced.provider_price == 25100
    gone.refresh_from_db()
    assert gone.provider_available is False  # no longer in the provider's list
    back.refresh_from_db()
    assert back.provider_available is True
    new = Product.objects.get(sku="indosat10")
    assert (new.name, new.provider_price, new.provider_available) == ("Indosat 10.000", 10400, True)
    assert (new.is_active, new.price_kopecks) == (False, 0)  # staff set a shop price first
    assert Product.objects.get(sku="axis5").provider_available is False  # seller_product_status false

    assert "2 created, 3 updated (1 disabled by the provider, 1 available again), 1 unchanged" in output
    created = "Created (priced by the rules; on sale with SYNC_AUTO_ACTIVATE, else activate them) (2)"
    assert f"{created}: Axis 5.000, Indosat 10.000" in output
    assert "Disabled by the provider (1): Old 5k" in output
    assert "applied 5/5 SKUs" in output
    assert "2 created" in ProviderAccount.objects.get(provider="digiflazz").price_list_summary


def test_sync_twice_within_five_minutes_is_refused_without_asking_digiflazz(fake_digiflazz):
    fake_digiflazz.price_list = [item("xld10")]
    run("sync_digiflazz_products")
    with pytest.raises(CommandError, match=r"at most once per 5 minutes.*Try again in (4 min \d+ s|5 min 0 s)"):
        run("sync_digiflazz_products")
    assert len(fake_digiflazz.calls) == 1

    _allow_next_pull()
    run("sync_digiflazz_products")
    assert len(fake_digiflazz.calls) == 2


def test_wait_time_counts_from_the_last_request(fake_digiflazz):
    ProviderAccount.objects.create(
        provider="digiflazz", price_list_requested_at=timezone.now() - timedelta(minutes=3, seconds=30)
    )
    with pytest.raises(CommandError, match=r"Try again in 1 min (29|30) s"):
        run("sync_digiflazz_products")
    assert fake_digiflazz.calls == []


def test_rate_limit_answer_is_explained_and_restarts_the_window(fake_digiflazz):
    fake_digiflazz.price_list_error = {"rc": "83", "message": "Limitasi cek harga"}
    with pytest.raises(CommandError, match=r"at most once per 5 minutes \(rc 83\)"):
        run("sync_digiflazz_products")
    with pytest.raises(CommandError, match="Try again in"):
        run("sync_digiflazz_products")
    assert len(fake_digiflazz.calls) == 1
    assert Product.objects.count() == 0


def test_failed_request_still_counts_against_the_limit(fake_digiflazz, digiflazz_settings):
    digiflazz_settings.DIGIFLAZZ_API_KEY = "wrong-key-123"
    with pytest.raises(CommandError, match="DIGIFLAZZ_API_KEY"):
        run("sync_digiflazz_products")
    digiflazz_settings.DIGIFLAZZ_API_KEY = fake_digiflazz.api_key
    with pytest.raises(CommandError, match="Try again in"):
        run("sync_digiflazz_products")


# --- admin --------------------------------------------------------------------------------------------


def test_admin_shows_the_last_known_balance(fake_digiflazz, admin_client):
    fake_digiflazz.deposit = 750000
    run("digiflazz_balance")
    page = admin_client.get("/admin/fulfillment/provideraccount/").content.decode()
    assert "750,000" in page


def test_admin_flags_and_filters_products_disabled_by_the_provider(admin_client, product_factory):
    product_factory(name="Gone product", provider_available=False)
    product_factory(name="Fine product", provider_available=True)

    page = admin_client.get("/admin/orders/product/").content.decode()
    assert '<strong style="color: #ba2121;">DISABLED by provider</strong>' in page
    disabled = admin_client.get("/admin/orders/product/?at_provider=disabled").content.decode()
    assert "Gone product" in disabled
    assert "Fine product" not in disabled


def test_product_cannot_be_activated_at_price_zero(db):
    form = ProductForm(data={"name": "Synced", "sku": "abc", "price_kopecks": 0, "is_active": True})
    assert not form.is_valid()
    assert "Set a shop price" in str(form.errors)
    form = ProductForm(data={"name": "Synced", "sku": "abc", "price_kopecks": 0, "is_active": False})
    assert form.is_valid(), form.errors
