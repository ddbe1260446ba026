"""The margin report: revenue, cost and margin of the units delivered in a period, by day and by
product, from what each sale was priced at (its price and its rate) and what each unit cost: the
supplier price its purchase answer gave (a backup SKU may cost more or less than the SKU the sale
was priced from) at the sale's rate, else the supplier cost the sale was priced from.

A unit counts on the day it was delivered (Moscow time, TIME_ZONE) and only while no refund
covers it: refunded units brought no revenue. A unit whose sale had no known cost (a manual price
on a product without a supplier price) counts in revenue and in `cost unknown`, never as margin.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Case, Count, DecimalField, F, Q, Sum, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus


@dataclass
class MarginLine:
    label: str
    units: int = 0
    revenue: int = 0  # kopecks
    cost: int = 0  # kopecks, of the units whose cost is known
    cost_unknown: int = 0  # units without a known cost
    known_revenue: int = 0  # kopecks, of the units whose cost is known

    @property
    def margin(self) -> int:
        """Revenue of the units with a known cost, less their cost."""
        return self.known_revenue - self.cost

    @property
    def margin_percent(self) -> float | None:
        return round(self.margin * 100 / self.known_revenue, 1) if self.known_revenue else None


@dataclass
class MarginReport:
    start: date
    end: date  # inclusive
    days: list[MarginLine] = field(default_factory=list)
    products: list[MarginLine] = field(default_factory=list)
    total: MarginLine = field(default_factory=lambda: MarginLine("total"))


def _delivered(start: date, end: date):
    zone = timezone.get_current_timezone()
    since = timezone.make_aware(datetime.combine(start, time.min), zone)
    until = timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min), zone)
    return Delivery.objects.filter(
        status=DeliveryStatus.DELIVERED, refund__isnull=True, delivered_at__gte=since, delivered_at__lt=until
    )


def _add(line: MarginLine, row: dict) -> None:
    line.units += row["units"]
    line.revenue += row["revenue"] or 0
    line.cost += int(Decimal(row["units_cost"] or 0).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    line.known_revenue += row["known_revenue"] or 0
    line.cost_unknown += row["unknown"]


#: The purchase's answer gave its price, and the sale has a rate to convert it at.
_ANSWERED = Q(cost__isnull=False, item__priced_rate__isnull=False)
_KNOWN = _ANSWERED | Q(item__cost_kopecks__isnull=False)
#: Kopecks one unit cost.
_UNIT_COST = Case(
    When(_ANSWERED, then=F("cost") * F("item__priced_rate") * 100),
    default=F("item__cost_kopecks"),
    output_field=DecimalField(max_digits=30, decimal_places=12),
)


def _sums() -> dict:
    return {
        "units": Count("id"),
        "revenue": Sum("item__unit_price_kopecks"),
        "units_cost": Sum(_UNIT_COST),
        "known_revenue": Sum("item__unit_price_kopecks", filter=_KNOWN),
        "unknown": Count("id", filter=~_KNOWN),
    }


def margin_total(*, start: date, end: date) -> MarginLine:
    """The period's totals alone, in one query (the dashboard's "today")."""
    line = MarginLine(label="total")
    _add(line, _delivered(start, end).aggregate(**_sums()))
    return line


def margin_report(*, start: date, end: date) -> MarginReport:
    """The report for the days start..end (inclusive): two grouped queries, whatever the volume."""
    sums = _sums()
    report = MarginReport(start=start, end=end)
    units = _delivered(start, end)
    by_day = {
        row["day"]: row
        for row in units.annotate(day=TruncDate("delivered_at", tzinfo=timezone.get_current_timezone()))
        .values("day")
        .annotate(**sums)
        .order_by("day")
    }
    day = start
    while day <= end:
        line = MarginLine(label=day.isoformat())
        if day in by_day:
            _add(line, by_day[day])
            _add(report.total, by_day[day])
        report.days.append(line)
        day += timedelta(days=1)
    for row in (
        units.values("item__product_id", "item__product__name")
        .annotate(**sums)
        .order_by("-revenue", "item__product_id")
    ):
        line = MarginLine(label=row["item__product__name"])
        _add(line, row)
        report.products.append(line)
    return report


def margin_csv(report: MarginReport) -> str:
    """The report as CSV (kopecks as roubles with two decimals): the days, then the products."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "day or product", "units", "revenue", "cost", "margin", "units without cost"])
    for section, lines in (("day", report.days), ("product", report.products), ("total", [report.total])):
        for line in lines:
            writer.writerow(
                [
                    section,
                    line.label,
                    line.units,
                    f"{line.revenue / 100:.2f}",
                    f"{line.cost / 100:.2f}",
                    f"{line.margin / 100:.2f}",
                    line.cost_unknown,
                ]
            )
    return out.getvalue()
