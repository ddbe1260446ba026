"""Query budgets of the payment webhook and the order admin: counts of SQL statements, not
times. Each stays the same whatever the size of the order (items, units, attempts) or the
number of orders listed, so that an N+1 cannot creep into the webhook or the admin."""

from __future__ import annotations

import math

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from fulfillment.models import Delivery, DeliveryAttempt
from fulfillment.providers.base import FailureScope, FulfillmentResult
from fulfillment.services import fulfill_order, order_fulfillment_reset_for_retry
from orders.models import Order, PaymentNotification
from orders.state import OrderStatus
from tests.conftest import notification

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _orders_of_any_size(settings):
    # The budgets must not depend on the order's size: measure above the default ORDER_MAX_UNITS.
    settings.ORDER_MAX_UNITS = 100


# Statements of a CONFIRMED notification that pays a NEW order, inside one transaction (opened
# as a savepoint by the test's own transaction): the order locked, checked and paid in one
# UPDATE ... RETURNING, the units created, the Payment upsert (the captured PaymentId), the
# audit INSERT. PostgreSQL reads the items and inserts the units in one statement; elsewhere
# the items are read first, and SQLite may split the units INSERT into batches.
WEBHOOK_PAY_STATEMENTS = 4


def _webhook_pay_budget(units: int) -> int:
    savepoint_and_release = 2
    if connection.vendor == "postgresql":
        return savepoint_and_release + WEBHOOK_PAY_STATEMENTS
    return savepoint_and_release + WEBHOOK_PAY_STATEMENTS + _delivery_insert_statements(units)


def _delivery_insert_statements(units: int) -> int:
    """INSERT statements Django needs for `units` Delivery rows on this database.

    SQLite caps the parameters of a statement (999 in Django), so bulk_create splits a large
    insert into fixed-size batches: one statement per batch of rows, never one per unit.
    """
    fields = [f for f in Delivery._meta.concrete_fields if not f.primary_key]
    per_statement = connection.ops.bulk_batch_size(fields, [None] * units) or units
    return math.ceil(units / per_statement)


def _pay_through_webhook(order_factory, post_notification, quantities) -> int:
    order = order_factory(quantities=quantities)
    with CaptureQueriesContext(connection) as queries:
        response = post_notification(notification(order))
    assert response.status_code == 200, response.content
    order.refresh_from_db()
    assert order.status == OrderStatus.PAID
    assert Delivery.objects.filter(order=order).count() == sum(quantities)
    return len(queries.captured_queries)


def test_paying_webhook_runs_a_fixed_number_of_queries_whatever_the_order_size(order_factory, post_notification):
    one_unit = _pay_through_webhook(order_factory, post_notification, quantities=(1,))
    hundred_units = _pay_through_webhook(order_factory, post_notification, quantities=(5,) * 20)

    assert one_unit == _webhook_pay_budget(1)
    # The only statement that may repeat is SQLite's batching of the units INSERT.
    assert hundred_units == _webhook_pay_budget(100)


def test_duplicate_notification_runs_fewer_queries_than_the_first(order_factory, post_notification):
    order = order_factory(quantities=(5,) * 20)
    assert post_notification(notification(order)).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert post_notification(notification(order)).status_code == 200
    # The paying UPDATE matches nothing (the order is not NEW), then: lock the order, see it is
    # already paid, record the notification. Nothing per unit. (One statement more than before
    # the one-statement payment: duplicates are rare, first payments are every payment.)
    assert len(queries.captured_queries) == 5
    assert PaymentNotification.objects.filter(order=order).count() == 2


# --- the admin --------------------------------------------------------------------------------


@pytest.fixture
def populated_orders(order_factory, post_notification, scripted_provider):
    """populated_orders(count, quantities) -> `count` orders paid through the webhook (each with a
    duplicate notification too) and delivered, so each has items, units, attempts and
    notifications; the first unit of each order needed a second purchase."""

    def make(count: int, quantities: tuple[int, ...]) -> list[Order]:
        orders = []
        for n in range(count):
            order = order_factory(quantities=quantities)
            first_sku = order.items.select_related("product").first().product.sku
            busy = FulfillmentResult.failed(scope=FailureScope.RETRYABLE, code="busy", message="try again")
            scripted_provider.script(first_sku, busy)
            assert post_notification(notification(order, PaymentId=7000 + n)).status_code == 200
            assert post_notification(notification(order, PaymentId=7000 + n)).status_code == 200
            fulfill_order(order.pk)
            # The failed unit waits out its backoff; staff's retry makes it due now.
            order_fulfillment_reset_for_retry(order_id=order.pk)
            assert fulfill_order(order.pk).complete
            orders.append(order)
        return orders

    return make


def _count(client, url: str) -> int:
    # Once unmeasured: the first admin request of a process also fills Django's content type
    # cache, a one-off query that has nothing to do with the page's size.
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries.captured_queries)


def test_order_changelist_runs_a_fixed_number_of_queries(admin_client, populated_orders):
    url = reverse("admin:orders_order_changelist")
    populated_orders(1, (1,))
    few = _count(admin_client, url)

    populated_orders(6, (3, 2, 4))
    assert Order.objects.count() == 7
    assert DeliveryAttempt.objects.count() > 7 * 2
    many = _count(admin_client, url)

    assert many == few


def test_order_change_page_runs_a_fixed_number_of_queries(admin_client, populated_orders):
    (small,) = populated_orders(1, (1,))
    (large,) = populated_orders(1, (5,) * 20)
    assert DeliveryAttempt.objects.filter(order=large).count() == 101
    assert PaymentNotification.objects.filter(order=large).count() == 2

    small_count = _count(admin_client, reverse("admin:orders_order_change", args=[small.pk]))
    large_count = _count(admin_client, reverse("admin:orders_order_change", args=[large.pk]))

    assert large_count == small_count


# --- the staff console's other pages ----------------------------------------------------------

# The dashboard: session and user, eleven problem counts (the twelfth, balances, runs only with
# PROVIDER_BALANCE_ALERT set; the exchange-rate one reads the rate only while price rules exist;
# the margin one reads the rules only while manual prices exist; the price-decision one reads the
# repricing pauses and counts units only while one has a new price), the provider accounts, today's
# margin, the halt banner, the recent actions.
DASHBOARD_BUDGET = 18


def test_dashboard_runs_a_fixed_number_of_queries(admin_client, populated_orders):
    from django.utils import timezone

    from fulfillment.models import ProviderAccount
    from fulfillment.services import provider_halt

    url = reverse("admin:index")
    populated_orders(1, (1,))
    few = _count(admin_client, url)

    populated_orders(4, (2, 3))
    Delivery.objects.filter(pk__in=Delivery.objects.values("pk")[:3]).update(status="failed")
    Order.objects.update(paid_at=timezone.now() - timezone.timedelta(days=1))
    provider_halt(provider="mock", code="41", reason="bad key")
    provider_halt(provider="digiflazz", code="41", reason="bad key")
    ProviderAccount.objects.create(provider="digiflazz", balance=10)
    many = _count(admin_client, url)

    assert many == few == DASHBOARD_BUDGET


@pytest.mark.parametrize(
    "changelist",
    [
        "admin:orders_paymentnotification_changelist",
        "admin:fulfillment_delivery_changelist",
        "admin:fulfillment_deliveryattempt_changelist",
    ],
)
def test_audit_lists_run_a_fixed_number_of_queries(admin_client, populated_orders, changelist):
    url = reverse(changelist)
    populated_orders(1, (1,))
    few = _count(admin_client, url)
    populated_orders(5, (3, 2))
    many = _count(admin_client, url)
    assert many == few


@pytest.mark.parametrize("term", ["id", "email", "payment_id", "reference", "recipient"])
def test_order_search_runs_a_fixed_number_of_queries(admin_client, populated_orders, term):
    url = reverse("admin:orders_order_changelist")

    def count_for(order) -> int:
        unit = Delivery.objects.filter(order=order).first()
        value = {
            "id": str(order.pk),
            "email": order.customer_email,
            "payment_id": order.payment_id,
            "reference": unit.reference,
            "recipient": order.items.first().recipient,
        }[term]
        admin_client.get(url, {"q": value})
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url, {"q": value})
        assert order in response.context["cl"].result_list
        return len(queries.captured_queries)

    (first,) = populated_orders(1, (1,))
    few = count_for(first)
    (*_, last) = populated_orders(5, (3, 2))
    assert count_for(last) == few
