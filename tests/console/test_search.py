"""Admin search finds what staff have at hand through exact lookups on indexed columns: no
DISTINCT, no join, no scan; list counts are capped; every filter has an index behind it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from fulfillment.models import Delivery
from fulfillment.services import fulfill_order
from fulfillment_site.console.pagination import CappedCountPaginator
from orders.models import Order
from tests.conftest import notification

ORDERS = reverse("admin:orders_order_changelist")
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="plans are PostgreSQL's")


@pytest.fixture
def shop(order_factory, paid_order_factory, post_notification, scripted_provider):
    """The target order (paid twice, delivered after a retryable failure) among others."""
    from fulfillment.providers.base import FailureScope, FulfillmentResult
    from fulfillment.services import order_fulfillment_reset_for_retry

    target = order_factory(quantities=(1,), email="Alice.Smith@Example.com", recipient="087812345678")
    sku = target.items.get().product.sku
    scripted_provider.script(sku, FulfillmentResult.failed(scope=FailureScope.RETRYABLE, code="busy"))
    post_notification(notification(target, PaymentId=1111111))
    post_notification(notification(target, PaymentId=3333333))  # a second payment, needs review
    first_reference = Delivery.objects.get(order=target).reference
    fulfill_order(target.pk)
    order_fulfillment_reset_for_retry(order_id=target.pk)
    fulfill_order(target.pk)
    for n in range(3):
        paid_order_factory(email=f"bob{n}@example.com", recipient=f"player-{n}", payment_id=f"22222{n}")
    return {"order": target, "first_reference": first_reference}


def search(client, term: str, url: str = ORDERS) -> list:
    response = client.get(url, {"q": term})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.mark.parametrize(
    "term",
    [
        "id",
        "alice.smith@example.com",
        "ALICE.SMITH@EXAMPLE.COM",
        "alice.smith@",
        "alice.smith",
        "1111111",
        "3333333",
        "087812345678",
        "reference",
        "first_reference",
        "unit_key",
    ],
)
def test_search_finds_the_order_by_what_staff_have_at_hand(admin_client, shop, term):
    target = shop["order"]
    unit = Delivery.objects.get(order=target)
    value = {
        "id": str(target.pk),
        "reference": unit.reference,
        "first_reference": shop["first_reference"],
        "unit_key": unit.unit_key,
    }.get(term, term)
    assert unit.reference != shop["first_reference"]  # the retry bought under a new reference
    assert search(admin_client, value) == [target]


def test_every_word_must_match(admin_client, shop):
    target = shop["order"]
    assert search(admin_client, f"{target.pk}   087812345678") == [target]
    assert search(admin_client, f"{target.pk} player-1") == []
    assert search(admin_client, "") == list(Order.objects.order_by("-id"))


def test_search_runs_no_distinct_no_join_and_a_fixed_number_of_queries(admin_client, shop, order_factory):
    admin_client.get(ORDERS, {"q": "1111111"})
    with CaptureQueriesContext(connection) as few:
        search(admin_client, "1111111")
    for _ in range(5):
        order_factory(recipient="1111111")
    with CaptureQueriesContext(connection) as many:
        assert len(search(admin_client, "1111111")) == 6
    assert len(many.captured_queries) == len(few.captured_queries)
    for query in many.captured_queries:
        assert "DISTINCT" not in query["sql"].upper(), query["sql"]


@pytest.mark.parametrize(
    ("model", "term", "expected"),
    [
        ("orders_paymentnotification", "order_id", 2),
        ("orders_paymentnotification", "3333333", 1),
        ("fulfillment_delivery", "reference", 1),
        ("fulfillment_delivery", "first_reference", 1),
        ("fulfillment_delivery", "087812345678", 1),
        ("fulfillment_delivery", "order_id", 1),
        ("fulfillment_deliveryattempt", "first_reference", 1),
        ("fulfillment_deliveryattempt", "order_id", 2),
    ],
)
def test_other_lists_search_exactly(admin_client, shop, model, term, expected):
    target = shop["order"]
    value = {
        "order_id": str(target.pk),
        "reference": Delivery.objects.get(order=target).reference,
        "first_reference": shop["first_reference"],
    }.get(term, term)
    assert len(search(admin_client, value, reverse(f"admin:{model}_changelist"))) == expected


def test_counts_are_capped_past_the_cap(admin_client, paid_order_factory, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "cap", 3)
    for _ in range(5):
        paid_order_factory()
    response = admin_client.get(ORDERS)
    paginator = response.context["cl"].paginator
    if connection.vendor == "postgresql":
        assert paginator.estimated and paginator.count >= 4
        assert "about " in response.content.decode()
    else:
        assert (paginator.estimated, paginator.count) == (False, 5)
    assert response.context["cl"].full_result_count is None  # no second COUNT of the whole table


def test_a_count_under_the_cap_is_exact(admin_client, paid_order_factory):
    for _ in range(3):
        paid_order_factory()
    paginator = admin_client.get(ORDERS).context["cl"].paginator
    assert (paginator.estimated, paginator.count) == (False, 3)


# --- PostgreSQL plans: an index serves every search and filter -----------------------------


def _plan(queryset) -> str:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@postgres_only
@pytest.mark.parametrize(
    "lookup",
    [
        ("orders.Order", {"customer_email__iexact": "a@b.c"}),
        ("orders.Order", {"customer_email__istartswith": "a@"}),
        ("orders.Order", {"payment_id": "1"}),
        ("orders.Order", {"status": "paid", "paid_at__lt": "2026-01-01T00:00:00Z"}),
        ("orders.Order", {"created_at__gte": "2026-01-01T00:00:00Z"}),
        ("orders.OrderItem", {"recipient": "0878"}),
        ("orders.PaymentNotification", {"verdict": "forbidden"}),
        ("orders.PaymentNotification", {"bank_status": "REFUNDED"}),
        ("orders.PaymentNotification", {"verdict": "needs_review", "reviewed_at__isnull": True}),
        ("orders.PaymentNotification", {"order_ref": "1"}),
        ("fulfillment.Delivery", {"status": "failed"}),
        ("fulfillment.Delivery", {"provider": "mock"}),
        ("fulfillment.Delivery", {"reference": "x"}),
        ("fulfillment.DeliveryAttempt", {"outcome": "failed"}),
        ("fulfillment.DeliveryAttempt", {"provider": "mock"}),
        ("fulfillment.DeliveryAttempt", {"kind": "check"}),
        ("fulfillment.DeliveryAttempt", {"reference": "x"}),
    ],
    ids=lambda lookup: f"{lookup[0]}:{','.join(lookup[1])}",
)
def test_an_index_serves_each_search_and_filter(db, lookup):
    from django.apps import apps

    model = apps.get_model(lookup[0])
    plan = _plan(model.objects.filter(**lookup[1]).order_by("-id")[:100])
    assert "Seq Scan" not in plan, plan
