"""What the console must remember across processes: alerts already sent, and metric counters."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class StaffAlert(models.Model):
    """One kind of problem staff were emailed about, and when: at most one email per problem per
    STAFF_ALERT_REPEAT_MINUTES, whichever process runs the alert task."""

    problem = models.CharField(_("problem"), max_length=100, unique=True)
    last_sent_at = models.DateTimeField(_("last sent at"), null=True, blank=True)
    last_count = models.PositiveIntegerField(_("last count"), default=0)
    last_text = models.TextField(_("last text"), blank=True)

    def __str__(self) -> str:
        return f"alert {self.problem}"


class MetricCounterState(models.Model):
    """Running totals of an append-only audit table (notifications, provider calls) for /metrics.

    Each scrape adds only the rows inserted since the last one (`last_id`), so a scrape reads a
    few new rows, never the millions already counted. `observed` keeps recent (time, max id)
    pairs: rows are counted once their id was seen long enough ago that their transaction has
    committed.
    """

    source = models.CharField(_("source"), max_length=50, unique=True)
    last_id = models.BigIntegerField(_("last id"), default=0)
    totals = models.JSONField(_("totals"), default=dict, blank=True)
    observed = models.JSONField(_("observed"), default=list, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    def __str__(self) -> str:
        return f"metric counters of {self.source}"
