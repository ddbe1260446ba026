"""Prices from supplier cost, the exchange rate and staff's price rules (orders.services.pricing),
the Central Bank's daily rate (orders.cbr), and what staff do with them in the admin."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
import responses
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from fulfillment.signals import price_list_applied
from orders.cbr import RateUnavailable, rate_from_xml
from orders.models import (
    Brand,
    Category,
    ExchangeRate,
    PriceChange,
    PriceChangeReason,
    PriceRounding,
    PriceRule,
    Product,
    ProductSource,
    RateSource,
)
from orders.services import ItemSpec, order_create
from orders.services.pricing import (
    cost_in_kopecks,
    exchange_rate_in_use,
    exchange_rate_refresh,
    exchange_rate_set_fixed,
    price_for,
    products_reprice,
)

pytestmark = pytest.mark.django_db

CBR_URL = "https://cbr.test/scripts/XML_daily.asp"
# The shape of the Central Bank's XML_daily.asp (windows-1251, decimal commas, IDR per 10,000).
CBR_XML = """<?xml version="1.0" encoding="windows-1251"?>
<ValCurs Date="{date}" name="Foreign Currency Market">
<Valute ID="R01235"><NumCode>840</NumCode><CharCode>USD</CharCode><Nominal>1</Nominal><Name>Доллар США</Name>\
<Value>78,2302</Value><VunitRate>78,2302</VunitRate></Valute>
<Valute ID="R01280"><NumCode>360</NumCode><CharCode>IDR</CharCode><Nominal>10000</Nominal><Name>Рупий</Name>\
<Value>{idr}</Value><VunitRate>0,00470188</VunitRate></Valute>
</ValCurs>"""


def cbr_body(*, idr: str = "47,0188", day=None) -> bytes:
    day = day or timezone.localdate()
    return CBR_XML.format(date=f"{day:%d.%m.%Y}", idr=idr).encode("windows-1251")


@pytest.fixture
def rate(settings):
    """rate("0.005") -> that many roubles per rupiah, stored for today as the rate in use."""
    settings.PRICING_FIXED_RATE = ""

    def make(value: str = "0.005") -> ExchangeRate:
        return exchange_rate_set_fixed(rub_per_unit=Decimal(value))

    return make


def rule(**values) -> PriceRule:
    values.setdefault("rounding", PriceRounding.ROUBLE)
    return PriceRule.objects.create(**values)


# --- the formula ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "fixed", "margin", "rounding", "cost", "price"),
    [
        ("10", 0, 0, PriceRounding.ROUBLE, 10000, 11000),  # 100 ₽ + 10 % = 110 ₽
        ("10", 0, 0, PriceRounding.ROUBLE, 10001, 11100),  # 110.0011 ₽ rounds up to 111 ₽
        ("10", 0, 0, PriceRounding.TEN, 10000, 11000),
        ("12", 0, 0, PriceRounding.TEN, 10000, 12000),  # 112 ₽ up to 120 ₽
        ("12", 0, 0, PriceRounding.NINE, 10000, 11900),  # 112 ₽ up to 119 ₽
        ("0", 0, 0, PriceRounding.NINE, 11900, 11900),  # already ends in 9
        ("5", 500, 0, PriceRounding.ROUBLE, 10000, 11000),  # 105 ₽ + 5 ₽
        ("1", 0, 3000, PriceRounding.ROUBLE, 10000, 13000),  # the minimum margin wins over 1 %
        ("-50", 0, 1000, PriceRounding.ROUBLE, 10000, 11000),  # never below cost + margin
    ],
)
def test_price_is_cost_times_markup_plus_addition_rounded_up_never_below_the_margin(
    markup, fixed, margin, rounding, cost, price
):
    made = price_for(
        cost_kopecks=cost,
        rule=PriceRule(
            markup_percent=Decimal(markup), fixed_kopecks=fixed, min_margin_kopecks=margin, rounding=rounding
        ),
    )
    assert made == price


def test_cost_in_roubles_is_rounded_up_to_the_kopeck():
    # 10,001 rupiah x 0.0047 = 47.0047 ₽: the shop never assumes less than it pays.
    assert cost_in_kopecks(10001, Decimal("0.0047")) == 4701


# --- rules, most specific first ------------------------------------------------------------------


def test_the_most_specific_active_rule_prices_each_product(product_factory, rate):
    rate("0.01")  # 10,000 rupiah = 100 ₽
    games, cards = Category.objects.create(name="Games"), Category.objects.create(name="Cards")
    steam = Brand.objects.create(name="Steam")
    by_default = product_factory(provider_price=10000)
    by_category = product_factory(provider_price=10000, category=games)
    by_brand = product_factory(provider_price=10000, category=games, brand=steam)
    by_product = product_factory(provider_price=10000, category=games, brand=steam)
    inactive_category = product_factory(provider_price=10000, category=cards)
    rule(markup_percent=Decimal("1"))
    rule(category=games, markup_percent=Decimal("2"))
    rule(brand=steam, markup_percent=Decimal("3"))
    rule(product=by_product, markup_percent=Decimal("4"))
    rule(category=cards, markup_percent=Decimal("50"), is_active=False)

    report = products_reprice(reason=PriceChangeReason.RULE)

    prices = dict(Product.objects.values_list("pk", "price_kopecks"))
    assert prices[by_default.pk] == 10100
    assert prices[by_category.pk] == 10200
    assert prices[by_brand.pk] == 10300
    assert prices[by_product.pk] == 10400
    assert prices[inactive_category.pk] == 10100  # its rule is off: the default applies
    assert (report.checked, report.changed, report.problem) == (5, 5, "")


def test_every_change_is_recorded_with_cost_rate_and_rule(product_factory, rate):
    rate("0.005")
    product = product_factory(provider_price=20000, price_kopecks=5000)
    rule(markup_percent=Decimal("10"), min_margin_kopecks=500)

    products_reprice(reason=PriceChangeReason.SYNC)

    change = PriceChange.objects.get(product=product)
    assert (change.old_price_kopecks, change.new_price_kopecks) == (5000, 11000)
    assert (change.cost, change.cost_kopecks, change.rate) == (20000, 10000, Decimal("0.005"))
    assert change.reason == PriceChangeReason.SYNC
    assert "+10.00%" in change.rule_description and "default" in change.rule_description
    product.refresh_from_db()
    assert (product.cost_kopecks, product.priced_rate) == (10000, Decimal("0.005"))

    products_reprice(reason=PriceChangeReason.RULE)  # nothing moved: nothing recorded
    assert PriceChange.objects.filter(product=product).count() == 1


def test_a_manual_price_wins_over_the_rules(product_factory, rate):
    rate("0.01")
    product = product_factory(provider_price=10000, manual_price_kopecks=9900, price_kopecks=9900)
    rule(markup_percent=Decimal("50"))

    products_reprice(reason=PriceChangeReason.RATE)

    product.refresh_from_db()
    assert product.price_kopecks == 9900
    assert product.cost_kopecks == 10000  # its cost is still known, for the margin


def test_a_product_without_a_supplier_price_or_a_rule_keeps_its_price(product_factory, rate):
    rate("0.01")
    no_cost = product_factory(price_kopecks=7000)
    no_rule = product_factory(provider_price=10000, price_kopecks=8000)

    report = products_reprice(reason=PriceChangeReason.RULE)

    assert (report.no_cost, report.no_rule, report.changed) == (1, 1, 0)
    assert dict(Product.objects.values_list("pk", "price_kopecks")) == {no_cost.pk: 7000, no_rule.pk: 8000}


def test_orders_already_placed_keep_their_prices(product_factory, rate):
    rate("0.01")
    product = product_factory(provider_price=10000, price_kopecks=10000)
    order = order_create(items=[ItemSpec(product=product, recipient="5123456789")], customer_email="a@example.com")
    rule(markup_percent=Decimal("30"))

    products_reprice(reason=PriceChangeReason.RULE)

    product.refresh_from_db()
    order.refresh_from_db()
    assert product.price_kopecks == 13000
    assert (order.amount_kopecks, order.items.get().unit_price_kopecks) == (10000, 10000)


# --- the rate in use ---------------------------------------------------------------------------------


def test_a_stale_rate_changes_no_price_and_says_why(product_factory, settings):
    settings.PRICING_FIXED_RATE = ""
    settings.PRICING_MAX_RATE_AGE_DAYS = 3
    exchange_rate_set_fixed(rub_per_unit=Decimal("0.01"), day=timezone.localdate() - timedelta(days=4))
    product = product_factory(provider_price=10000, price_kopecks=5000)
    rule(markup_percent=Decimal("10"))

    report = products_reprice(reason=PriceChangeReason.RATE)

    assert "4 days old" in report.problem and "PRICING_MAX_RATE_AGE_DAYS=3" in report.problem
    product.refresh_from_db()
    assert product.price_kopecks == 5000
    assert not PriceChange.objects.exists()


def test_no_rate_at_all_changes_nothing(product_factory, settings):
    settings.PRICING_FIXED_RATE = ""
    product_factory(provider_price=10000, price_kopecks=5000)
    rule(markup_percent=Decimal("10"))

    report = products_reprice(reason=PriceChangeReason.RULE)

    assert "No exchange rate yet" in report.problem
    assert Product.objects.get().price_kopecks == 5000


def test_a_fixed_rate_in_settings_replaces_the_central_banks(product_factory, settings, rate):
    rate("0.01")
    settings.PRICING_FIXED_RATE = "0.02"
    product = product_factory(provider_price=10000)
    rule(markup_percent=Decimal("0"))

    products_reprice(reason=PriceChangeReason.RULE)

    assert exchange_rate_in_use().source == RateSource.FIXED
    product.refresh_from_db()
    assert product.price_kopecks == 20000


# --- the Central Bank ---------------------------------------------------------------------------------


def test_the_central_banks_idr_rate_is_read_per_unit():
    daily = rate_from_xml(cbr_body(idr="47,0188"), currency="IDR")
    assert daily.rub_per_unit == Decimal("0.00470188")
    assert daily.date == timezone.localdate()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>maintenance</html>", "no valid Date"),
        (b"not xml at all", "not XML"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ValCurs Date="01.12.2026"/>', "DTD"),
        (CBR_XML.replace("IDR", "XXX").format(date="01.12.2026", idr="1,0").encode("cp1251"), "have no IDR"),
        (CBR_XML.format(date="01.12.2026", idr="abc").encode("cp1251"), "no readable Nominal or Value"),
        (CBR_XML.format(date="01.12.2026", idr="0,0").encode("cp1251"), "not positive"),
    ],
)
def test_a_document_that_is_not_a_rates_list_is_refused_with_the_reason(body, problem):
    with pytest.raises(RateUnavailable, match=problem):
        rate_from_xml(body, currency="IDR")


@responses.activate
def test_refreshing_stores_a_new_rate_and_reprices(product_factory, settings):
    settings.PRICING_FIXED_RATE = ""
    settings.CBR_DAILY_URL = CBR_URL
    responses.get(CBR_URL, body=cbr_body(idr="50,0000"))
    product = product_factory(provider_price=10000, price_kopecks=1)
    rule(markup_percent=Decimal("0"))

    stored, report = exchange_rate_refresh()

    assert (stored.source, stored.rub_per_unit) == (RateSource.CBR, Decimal("0.005"))
    assert report.changed == 1
    product.refresh_from_db()
    assert product.price_kopecks == 5000
    assert PriceChange.objects.get().reason == PriceChangeReason.RATE

    again, report = exchange_rate_refresh()  # the same rate: nothing to do
    assert again.pk == stored.pk and report.checked == 0
    assert ExchangeRate.objects.count() == 1


@responses.activate
def test_an_unreachable_central_bank_changes_nothing(product_factory, settings):
    settings.PRICING_FIXED_RATE = ""
    settings.CBR_DAILY_URL = CBR_URL
    responses.get(CBR_URL, status=503)

    with pytest.raises(RateUnavailable, match="HTTP 503"):
        exchange_rate_refresh()
    assert not ExchangeRate.objects.exists()


# --- reactions and staff --------------------------------------------------------------------------------


def test_an_applied_price_list_reprices_the_catalogue(product_factory, rate):
    rate("0.01")
    product = product_factory(provider_price=10000, price_kopecks=1)
    rule(markup_percent=Decimal("10"))

    price_list_applied.send(sender=None, report=None)

    product.refresh_from_db()
    assert product.price_kopecks == 11000
    assert PriceChange.objects.get().reason == PriceChangeReason.SYNC


def test_saving_a_rule_in_the_admin_reprices(admin_client, product_factory, rate):
    rate("0.01")
    product = product_factory(provider_price=10000, price_kopecks=1)

    response = admin_client.post(
        reverse("admin:orders_pricerule_add"),
        {
            "markup_percent": "25",
            "fixed_kopecks": "0",
            "min_margin_kopecks": "0",
            "rounding": "rouble",
            "is_active": "on",
        },
    )

    assert response.status_code == 302, response.content[:2000]
    product.refresh_from_db()
    assert product.price_kopecks == 12500
    change = PriceChange.objects.get()
    assert change.changed_by.username == "admin"


def test_a_price_typed_in_the_admin_becomes_the_manual_price(admin_client, product_factory, rate):
    rate("0.01")
    product = product_factory(provider_price=10000, price_kopecks=11000, recipient_label="ID")
    rule(markup_percent=Decimal("10"))
    url = reverse("admin:orders_product_change", args=[product.pk])
    form = {
        "name": product.name,
        "sku": product.sku,
        "price_kopecks": "15000",
        "manual_price_kopecks": "",
        "is_active": "on",
        "recipient_label": "ID",
        "recipient_pattern": "",
        "category": "",
        "brand": "",
        "max_provider_price": "",
    }

    assert admin_client.post(url, form).status_code == 302

    product.refresh_from_db()
    assert (product.price_kopecks, product.manual_price_kopecks) == (15000, 15000)
    assert PriceChange.objects.get().reason == PriceChangeReason.MANUAL
    products_reprice(reason=PriceChangeReason.RATE)  # the rules leave it alone now
    product.refresh_from_db()
    assert product.price_kopecks == 15000

    # Staff clear the manual price (the price field as it was): the rules price it again.
    assert admin_client.post(url, {**form, "manual_price_kopecks": ""}).status_code == 302
    product.refresh_from_db()
    assert (product.price_kopecks, product.manual_price_kopecks) == (11000, None)


@pytest.mark.parametrize(
    "name", ["orders_pricerule_changelist", "orders_exchangerate_changelist", "orders_pricechange_changelist"]
)
def test_the_pricing_pages_open(admin_client, product_factory, rate, name):
    rate("0.01")
    rule(product=product_factory(provider_price=10000), markup_percent=Decimal("5"))
    products_reprice(reason=PriceChangeReason.RULE)

    response = admin_client.get(reverse(f"admin:{name}"))

    assert response.status_code == 200


def test_the_demo_catalogue_is_priced_by_rules_not_by_hand(settings):
    settings.DEBUG = True
    settings.PRICING_FIXED_RATE = ""
    call_command("load_demo_data", "--orders", "0", stdout=StringIO())

    products = list(Product.objects.all())
    assert products and all(product.manual_price_kopecks is None for product in products)
    assert all(product.price_kopecks > product.cost_kopecks > 0 for product in products)
    changes = PriceChange.objects.filter(reason=PriceChangeReason.RULE)
    assert changes.count() == len(products) and all(change.rule_description for change in changes)
    # One product has a second seller's SKU to show routing.
    assert list(ProductSource.objects.values_list("product__sku", "sku")) == [("pubg325", "pubg325-b")]


def test_the_dashboard_says_why_prices_do_not_follow_costs(admin_client, settings):
    settings.PRICING_FIXED_RATE = ""
    settings.PRICING_MAX_RATE_AGE_DAYS = 3
    rule(markup_percent=Decimal("10"))
    exchange_rate_set_fixed(rub_per_unit=Decimal("0.01"), day=timezone.localdate() - timedelta(days=5))

    page = admin_client.get(reverse("admin:index")).content.decode()

    assert "Prices not following costs" in page or "Цены не следуют" in page
    assert reverse("admin:orders_exchangerate_changelist") in page

    exchange_rate_set_fixed(rub_per_unit=Decimal("0.01"))  # a fresh rate: nothing to say
    problems = admin_client.get(reverse("admin:index")).context["problems"]
    assert {problem.key: problem.count for problem in problems}["exchange_rate_stale"] == 0


@responses.activate
def test_the_command_fetches_the_rate_and_reprices_with_progress(product_factory, settings):
    settings.PRICING_FIXED_RATE = ""
    settings.CBR_DAILY_URL = CBR_URL
    responses.get(CBR_URL, body=cbr_body(idr="100,0000"))
    product = product_factory(provider_price=10000, price_kopecks=1)
    rule(markup_percent=Decimal("0"))
    out = StringIO()

    call_command("reprice_products", "--fetch-rate", stdout=out)

    product.refresh_from_db()
    assert product.price_kopecks == 10000
    assert "1/1" in out.getvalue()


def test_the_command_refuses_without_a_rate_and_says_how_to_fix_it(product_factory, settings):
    from django.core.management.base import CommandError

    settings.PRICING_FIXED_RATE = ""
    rule(markup_percent=Decimal("0"))
    with pytest.raises(CommandError, match="PRICING_FIXED_RATE"):
        call_command("reprice_products", stdout=StringIO())


# --- never sell at a loss -----------------------------------------------------------------------------


def test_a_sale_caps_its_purchase_at_the_cost_it_was_priced_from_plus_the_tolerance(product_factory, rate, settings):
    rate("0.005")
    settings.PRICING_COST_TOLERANCE_PERCENT = 2
    product = product_factory(provider_price=20000)
    rule(markup_percent=Decimal("10"))
    products_reprice(reason=PriceChangeReason.RULE)
    # The supplier's price rises at a sync while the rate is stale: the shop price stays, and so
    # must the cap, which follows what the customer's price was made from.
    Product.objects.filter(pk=product.pk).update(provider_price=25000)
    product.refresh_from_db()

    order = order_create(items=[ItemSpec(product=product, recipient="5123456789")], customer_email="a@example.com")

    item = order.items.get()
    assert item.max_provider_price == 20400  # 20,000 rupiah + 2 %
    assert (item.cost_kopecks, item.priced_rate, item.unit_price_kopecks) == (10000, Decimal("0.005"), 11000)


def test_a_lower_cap_set_by_staff_is_kept(product_factory, rate):
    rate("0.005")
    product = product_factory(provider_price=20000, max_provider_price=20100)
    rule(markup_percent=Decimal("10"))
    products_reprice(reason=PriceChangeReason.RULE)
    product.refresh_from_db()

    order = order_create(items=[ItemSpec(product=product, recipient="5123456789")], customer_email="a@example.com")

    assert order.items.get().max_provider_price == 20100


def test_the_purchase_sends_the_cap_as_max_price(fake_digiflazz, digiflazz_order, rate, settings):
    from fulfillment.services import fulfill_order

    rate("0.005")
    settings.PRICING_COST_TOLERANCE_PERCENT = 2
    Product.objects.create(name="XL 10k", sku="xld10", price_kopecks=0, provider_price=10000, is_active=True)
    rule(markup_percent=Decimal("10"))
    products_reprice(reason=PriceChangeReason.RULE)

    fulfill_order(digiflazz_order(sku="xld10").pk)

    [body] = fake_digiflazz.transaction_calls
    assert body["max_price"] == 10200


def test_the_dashboard_names_products_selling_below_their_minimum_margin(admin_client, product_factory, rate):
    rate("0.01")
    rule(markup_percent=Decimal("10"), min_margin_kopecks=1000)
    cheap = product_factory(name="Too cheap", provider_price=10000, manual_price_kopecks=10500, price_kopecks=10500)
    product_factory(name="Fine", provider_price=10000, manual_price_kopecks=12000, price_kopecks=12000)
    product_factory(name="By rules", provider_price=10000)
    products_reprice(reason=PriceChangeReason.RULE)

    problems = {p.key: p for p in admin_client.get(reverse("admin:index")).context["problems"]}

    assert problems["below_margin"].count == 1  # 105 ₽ < cost 100 ₽ + margin 10 ₽
    listed = admin_client.get(problems["below_margin"].url)
    assert [product.pk for product in listed.context["cl"].result_list] == [cheap.pk]
