"""The margin report (fulfillment_site.console.margin): revenue, cost and margin of delivered
units by day and product from what each sale was priced at, its page with a chart, CSV, and the
dashboard's line for today."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment_site.console.margin import margin_report
from orders.models import Order, OrderItem, Payment, Refund, RefundReason
from orders.services import ItemSpec, order_create, order_mark_paid

pytestmark = pytest.mark.django_db
URL = reverse("admin:margin")


@pytest.fixture
def sold(product_factory):
    """sold(price, cost, units, days_ago=0, delivered=True, name=...) -> a paid order whose units were
    delivered `days_ago` days ago at `price` with a sale cost of `cost` (None: unknown)."""
    counter = iter(range(1, 1000))

    def make(*, price: int, cost: int | None, units: int = 1, days_ago: int = 0, name: str = "Product") -> Order:
        product = product_factory(name=name, price_kopecks=price)
        order = order_create(items=[ItemSpec(product=product, recipient="5123456789", quantity=units)])
        OrderItem.objects.filter(order=order).update(cost_kopecks=cost, priced_rate=Decimal("0.005"))
        order_mark_paid(order_id=order.pk, payment_id=str(7300000000 + next(counter)))
        when = timezone.now() - timedelta(days=days_ago)
        Delivery.objects.filter(order=order).update(status=DeliveryStatus.DELIVERED, delivered_at=when)
        return order

    return make


def test_revenue_cost_and_margin_by_day_and_product_from_each_sale(sold):
    today = timezone.localdate()
    sold(price=11000, cost=10000, units=2, name="Steam 500")
    sold(price=5000, cost=4000, days_ago=1, name="PUBG 325")
    sold(price=3000, cost=None, name="Gift card")  # a manual price without a supplier cost
    # Delivered after its refund was made (goods and money both given): no revenue.
    refunded = sold(price=9000, cost=1000, name="Steam 500")
    payment = Payment.objects.create(order=refunded, payment_id="7399999999", amount_kopecks=9000)
    refund = Refund.objects.create(
        order=refunded, payment=payment, amount_kopecks=9000, reason=RefundReason.STAFF, decided_by="x"
    )
    Delivery.objects.filter(order=refunded).update(refund=refund)

    report = margin_report(start=today - timedelta(days=1), end=today)

    assert [(line.label, line.units, line.revenue, line.cost, line.margin) for line in report.days] == [
        ((today - timedelta(days=1)).isoformat(), 1, 5000, 4000, 1000),
        (today.isoformat(), 3, 25000, 20000, 2000),
    ]
    by_product = {line.label: (line.units, line.revenue, line.margin, line.cost_unknown) for line in report.products}
    assert by_product == {
        "Steam 500": (2, 22000, 2000, 0),
        "PUBG 325": (1, 5000, 1000, 0),
        "Gift card": (1, 3000, 0, 1),
    }
    assert (report.total.revenue, report.total.margin, report.total.cost_unknown) == (30000, 3000, 1)


def test_a_unit_costs_what_its_purchase_answer_said_at_the_sales_rate(sold):
    today = timezone.localdate()
    # Both units were priced from a cost of 10,000 kopecks; one was bought through a backup SKU
    # whose answer said 21,000 rupiah, at the sale's rate (0.005) 10,500 kopecks.
    order = sold(price=11000, cost=10000, units=2, name="Steam 500")
    first, second = Delivery.objects.filter(order=order).order_by("pk")
    Delivery.objects.filter(pk=first.pk).update(cost=21000)
    # A unit whose sale has no rate counts the cost it was priced from, whatever the answer said.
    unpriced = sold(price=5000, cost=4000, name="PUBG 325")
    OrderItem.objects.filter(order=unpriced).update(priced_rate=None)
    Delivery.objects.filter(order=unpriced).update(cost=999999)

    report = margin_report(start=today, end=today)

    by_product = {line.label: (line.units, line.cost, line.margin) for line in report.products}
    assert by_product == {"Steam 500": (2, 10500 + 10000, 22000 - 20500), "PUBG 325": (1, 4000, 1000)}
    assert second.cost is None


def test_the_page_shows_the_chart_from_our_static_files_and_exports_csv(admin_client, sold):
    sold(price=11000, cost=10000, name="Steam 500")

    page = admin_client.get(URL)

    assert page.status_code == 200
    text = page.content.decode()
    assert "console/vendor/chart.umd.min.js" in text and 'id="margin-chart"' in text
    assert finders.find("console/vendor/chart.umd.min.js") and finders.find("console/margin.js")
    assert "Steam 500" in text
    exported = admin_client.get(URL, {"format": "csv"})
    assert exported["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert ["product", "Steam 500", "1", "110.00", "100.00", "10.00", "0"] in rows


def test_a_bad_date_says_so_and_shows_the_default_period(admin_client):
    page = admin_client.get(URL, {"start": "yesterday"})
    assert page.status_code == 200
    assert "yesterday" in page.content.decode()


def test_staff_without_the_orders_permission_cannot_read_it(staff_client_factory):
    assert staff_client_factory().get(URL).status_code == 403
    assert staff_client_factory("orders.view_order").get(URL).status_code == 200


def test_the_dashboard_shows_todays_margin(admin_client, sold):
    sold(price=11000, cost=10000, units=2)

    page = admin_client.get(reverse("admin:index")).content.decode()

    assert 'id="today-margin"' in page and URL in page
    assert "20.00" in page.replace("\xa0", " ").replace(",", ".")  # today's margin, 2 x 10 ₽
