"""Prometheus metrics of the service, computed from the database so every web process answers
the same: counters kept incrementally (MetricCounterState), gauges from indexed counts.

Cheap at millions of rows: a scrape aggregates only the audit rows inserted since the previous
scrape (an id range of the primary key), and every gauge counts a small indexed set (open and
failed units, halts, the dashboard's problems). Nothing scans a whole table.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from fulfillment.models import (
    OPEN_STATUSES,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    ProviderAccount,
    ProviderHalt,
)
from fulfillment_site.console.models import MetricCounterState
from fulfillment_site.console.problems import problems_count
from orders.models import PaymentNotification

#: Provider call latency buckets, in milliseconds (the attempt's duration_ms).
LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
#: Rows aggregated per scrape at most: a scrape after a long pause (or the first one on a big
#: table) catches up over several scrapes instead of running one long query.
BATCH = 100_000


def _advance(source: str, model, aggregate) -> dict:
    """Add to the totals of `source` the rows of `model` inserted since the last call; return them.

    Only ids seen at least METRICS_SETTLE_SECONDS ago are counted: an id is allocated when its
    row is inserted, so by then its transaction has committed (or rolled back) and counting up to
    it skips nothing that becomes visible later.
    """
    now = time.time()
    settle = settings.METRICS_SETTLE_SECONDS
    with transaction.atomic():
        state, _ = MetricCounterState.objects.select_for_update(no_key=True).get_or_create(source=source)
        newest = model.objects.aggregate(newest=Max("id"))["newest"] or 0
        observed = [*state.observed, [now, newest]]
        settled = [max_id for seen_at, max_id in observed if seen_at <= now - settle]
        upper = min(max(settled, default=state.last_id), state.last_id + BATCH)
        if upper > state.last_id:
            aggregate(model.objects.filter(id__gt=state.last_id, id__lte=upper), state.totals)
            state.last_id = upper
        older = [pair for pair in observed if pair[0] <= now - settle]
        state.observed = (older[-1:] + [pair for pair in observed if pair[0] > now - settle])[-200:]
        state.save(update_fields=["last_id", "totals", "observed", "updated_at"])
    return state.totals


def _add_notifications(rows, totals: dict) -> None:
    for row in rows.values("verdict").annotate(n=Count("id")).order_by():
        totals[row["verdict"]] = totals.get(row["verdict"], 0) + row["n"]


def _add_attempts(rows, totals: dict) -> None:
    buckets = {f"le{bound}": Count("id", filter=Q(duration_ms__lte=bound)) for bound in LATENCY_BUCKETS_MS}
    calls = totals.setdefault("calls", {})
    latency = totals.setdefault("latency", {})
    grouped = rows.values("provider", "kind", "outcome").annotate(n=Count("id"), ms=Sum("duration_ms"), **buckets)
    for row in grouped.order_by():
        key = f"{row['provider']}|{row['kind']}|{row['outcome']}"
        calls[key] = calls.get(key, 0) + row["n"]
        series = latency.setdefault(
            f"{row['provider']}|{row['kind']}", {"count": 0, "sum_ms": 0, "buckets": [0] * len(LATENCY_BUCKETS_MS)}
        )
        series["count"] += row["n"]
        series["sum_ms"] += row["ms"] or 0
        series["buckets"] = [
            have + row[f"le{bound}"] for have, bound in zip(series["buckets"], LATENCY_BUCKETS_MS, strict=True)
        ]


class DatabaseCollector:
    """Collects every metric from the database at scrape time."""

    def collect(self):
        verdicts = _advance("notifications", PaymentNotification, _add_notifications)
        family = CounterMetricFamily(
            "fulfillment_payment_notifications", "Payment notifications received, by verdict.", labels=["verdict"]
        )
        for verdict, count in sorted(verdicts.items()):
            family.add_metric([verdict], count)
        yield family

        attempts = _advance("attempts", DeliveryAttempt, _add_attempts)
        family = CounterMetricFamily(
            "fulfillment_provider_calls",
            "Provider calls (purchases, status checks, callbacks), by outcome.",
            labels=["provider", "kind", "outcome"],
        )
        for key, count in sorted(attempts.get("calls", {}).items()):
            family.add_metric(key.split("|"), count)
        yield family
        family = HistogramMetricFamily(
            "fulfillment_provider_call_duration_seconds",
            "How long provider calls took.",
            labels=["provider", "kind"],
        )
        for key, series in sorted(attempts.get("latency", {}).items()):
            buckets = [
                (str(bound / 1000), count) for bound, count in zip(LATENCY_BUCKETS_MS, series["buckets"], strict=True)
            ]
            buckets.append(("+Inf", series["count"]))
            family.add_metric(key.split("|"), buckets, sum_value=series["sum_ms"] / 1000)
        yield family

        # Units still to deliver, and failed ones (the (status, id) index: a few rows, never the table).
        now = timezone.now()
        watched = (*OPEN_STATUSES, DeliveryStatus.FAILED)
        rows = {
            row["status"]: row
            for row in Delivery.objects.filter(status__in=watched)
            .values("status")
            .annotate(n=Count("id"), oldest=Min("created_at"))
            .order_by()
        }
        units = GaugeMetricFamily(
            "fulfillment_units", "Units waiting, in flight, pending or failed.", labels=["status"]
        )
        ages = GaugeMetricFamily(
            "fulfillment_unit_oldest_age_seconds", "Age of the oldest unit in each status.", labels=["status"]
        )
        for status in watched:
            row = rows.get(status)
            units.add_metric([status], row["n"] if row else 0)
            ages.add_metric([status], (now - row["oldest"]).total_seconds() if row else 0)
        yield units
        yield ages

        halts = GaugeMetricFamily("fulfillment_provider_halted", "1 while a provider is halted.", labels=["provider"])
        for provider in ProviderHalt.objects.order_by("provider").values_list("provider", flat=True):
            halts.add_metric([provider], 1)
        yield halts

        balances = GaugeMetricFamily(
            "fulfillment_provider_balance", "Last known deposit at a provider (its currency).", labels=["provider"]
        )
        for provider, balance in ProviderAccount.objects.filter(balance__isnull=False).values_list(
            "provider", "balance"
        ):
            balances.add_metric([provider], balance)
        yield balances

        problems = GaugeMetricFamily(
            "fulfillment_problems", "Problems on the staff dashboard, by kind (0 is good).", labels=["problem"]
        )
        for problem in problems_count():
            problems.add_metric([problem.key], problem.count)
        yield problems
