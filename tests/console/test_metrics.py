"""/metrics: closed unless configured, then Prometheus text with notifications by verdict, provider
calls by outcome and their latency, units waiting/failed and their age, halts and problems —
counted incrementally, so a scrape reads only what is new."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from fulfillment.models import Delivery, DeliveryAttempt
from fulfillment.services import fulfill_order, provider_halt
from tests.conftest import notification

URL = "/metrics"
TOKEN = "metrics-token-5f1c"


@pytest.fixture
def metrics_on(settings, db):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    settings.METRICS_SETTLE_SECONDS = 0
    return settings


def scrape(client) -> dict:
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def test_metrics_do_not_exist_until_configured(client, db):
    assert client.get(URL).status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer"])
def test_a_wrong_or_missing_token_is_refused(client, metrics_on, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    assert client.get(URL, **extra).status_code == 403


def test_an_address_allow_list(client, db, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get(URL, REMOTE_ADDR="203.0.113.9").status_code == 403
    assert client.get(URL, REMOTE_ADDR="10.1.2.3").status_code == 200


def test_token_and_allow_list_together_need_both(client, metrics_on):
    metrics_on.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    assert client.get(URL, REMOTE_ADDR="203.0.113.9", **auth).status_code == 403
    assert client.get(URL, REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get(URL, REMOTE_ADDR="10.1.2.3", **auth).status_code == 200


def test_counters_histogram_and_gauges(client, metrics_on, order_factory, post_notification, scripted_provider):
    before = scrape(client)
    assert value(before, "fulfillment_payment_notifications_total", verdict="applied") == 0

    order = order_factory(quantities=(2,))
    post_notification(notification(order))
    post_notification(notification(order))  # duplicate
    post_notification({**notification(order), "Token": "forged"})
    fulfill_order(order.pk)
    stuck = order_factory()
    post_notification(notification(stuck))  # paid, its unit waits
    provider_halt(provider="digiflazz", code="41", reason="bad key")

    after = scrape(client)
    assert value(after, "fulfillment_payment_notifications_total", verdict="applied") == 2
    assert value(after, "fulfillment_payment_notifications_total", verdict="duplicate") == 1
    assert value(after, "fulfillment_payment_notifications_total", verdict="forbidden") == 1
    calls = {"provider": "scripted", "kind": "purchase"}
    assert value(after, "fulfillment_provider_calls_total", outcome="delivered", **calls) == 2
    assert value(after, "fulfillment_provider_call_duration_seconds_count", **calls) == 2
    assert value(after, "fulfillment_provider_call_duration_seconds_bucket", le="+Inf", **calls) == 2
    assert value(after, "fulfillment_provider_call_duration_seconds_bucket", le="0.05", **calls) == 2
    assert value(after, "fulfillment_units", status="waiting") == 1
    assert value(after, "fulfillment_units", status="failed") == 0
    assert value(after, "fulfillment_unit_oldest_age_seconds", status="waiting") >= 0
    assert value(after, "fulfillment_provider_halted", provider="digiflazz") == 1
    assert value(after, "fulfillment_problems", problem="provider_halts") == 1

    # Counted once: a second scrape with nothing new reports the same totals.
    again = scrape(client)
    assert value(again, "fulfillment_payment_notifications_total", verdict="applied") == 2
    assert value(again, "fulfillment_provider_calls_total", outcome="delivered", **calls) == 2


def test_rows_are_counted_only_once_their_id_has_settled(client, metrics_on, order_factory, post_notification):
    metrics_on.METRICS_SETTLE_SECONDS = 3600
    order = order_factory()
    post_notification(notification(order))
    first = scrape(client)
    # Seen for the first time just now: a transaction holding an earlier id might still commit.
    assert value(first, "fulfillment_payment_notifications_total", verdict="applied") == 0

    metrics_on.METRICS_SETTLE_SECONDS = 0
    assert value(scrape(client), "fulfillment_payment_notifications_total", verdict="applied") == 1


def test_a_scrape_reads_only_new_rows_in_a_fixed_number_of_queries(
    client, metrics_on, order_factory, post_notification
):
    def queries() -> tuple[int, list[str]]:
        with CaptureQueriesContext(connection) as captured:
            scrape(client)
        return len(captured.captured_queries), [query["sql"] for query in captured.captured_queries]

    order = order_factory()
    post_notification(notification(order))
    scrape(client)  # the first scrape creates the counters' rows
    post_notification(notification(order))
    few, _ = queries()
    for _ in range(20):
        post_notification(notification(order))
    many, statements = queries()
    assert many == few
    # The notifications are aggregated over an id range of new rows, never the whole table.
    aggregate = [sql for sql in statements if "GROUP BY" in sql and "paymentnotification" in sql]
    assert aggregate and all('"id" >' in sql for sql in aggregate)


def test_the_oldest_waiting_unit_has_an_age(client, metrics_on, paid_order_factory):
    order = paid_order_factory()
    Delivery.objects.filter(order=order).update(created_at=timezone.now() - timezone.timedelta(minutes=10))
    assert value(scrape(client), "fulfillment_unit_oldest_age_seconds", status="waiting") >= 600
    assert DeliveryAttempt.objects.count() == 0
