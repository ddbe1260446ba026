"""The margin report's page in the staff console (`admin/margin/`), and its CSV export."""

from __future__ import annotations

from datetime import date, timedelta

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from fulfillment_site.console.formatting import rubles
from fulfillment_site.console.margin import margin_csv, margin_report, margin_total

#: The longest period one page shows (a year of days).
MAX_DAYS = 366


def _day(value: str | None, default: date) -> tuple[date, str]:
    if not value:
        return default, ""
    try:
        return date.fromisoformat(value), ""
    except ValueError:
        return default, _("%(value)s is not a date (YYYY-MM-DD); %(default)s is shown.") % {
            "value": value[:20],
            "default": default.isoformat(),
        }


def margin_page(request, site):
    """Revenue, cost and margin by day and by product for a period (default: the last 30 days)."""
    if not request.user.has_perm("orders.view_order"):
        raise PermissionDenied
    today = timezone.localdate()
    end, end_problem = _day(request.GET.get("end"), today)
    start, start_problem = _day(request.GET.get("start"), end - timedelta(days=29))
    problems = [problem for problem in (start_problem, end_problem) if problem]
    if start > end:
        start, end = end, start
    if (end - start).days >= MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS - 1)
        problems.append(_("At most %(days)d days are shown at once.") % {"days": MAX_DAYS})
    report = margin_report(start=start, end=end)
    if request.GET.get("format") == "csv":
        response = HttpResponse(margin_csv(report), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="margin-{start}-{end}.csv"'
        return response
    chart = {
        "labels": [line.label for line in report.days],
        "revenue": [line.revenue / 100 for line in report.days],
        "cost": [line.cost / 100 for line in report.days],
        "margin": [line.margin / 100 for line in report.days],
        "names": {"revenue": _("Revenue"), "cost": _("Cost"), "margin": _("Margin")},
    }
    context = {
        **site.each_context(request),
        "title": _("Margin report"),
        "start": start,
        "end": end,
        "days": [_row(line) for line in report.days if line.units],
        "products": [_row(line) for line in report.products],
        "total": _row(report.total),
        "problems": problems,
        "chart": chart,
        "csv_query": f"?start={start.isoformat()}&end={end.isoformat()}&format=csv",
    }
    return TemplateResponse(request, "console/margin.html", context)


def today_margin() -> dict:
    """Today's revenue and margin for the dashboard (one query)."""
    today = timezone.localdate()
    total = margin_total(start=today, end=today)
    return {"revenue": rubles(total.revenue), "margin": rubles(total.margin), "units": total.units}


def _row(line) -> dict:
    percent = line.margin_percent
    return {
        "label": line.label,
        "units": line.units,
        "revenue": rubles(line.revenue),
        "cost": rubles(line.cost),
        "margin": rubles(line.margin),
        "percent": "—" if percent is None else f"{percent:.1f} %",
        "negative": line.margin < 0,
        "cost_unknown": line.cost_unknown,
    }
