"""How the console writes money and times: one helper each, used by list columns and detail pages alike."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

#: Every timestamp in the console: local time (TIME_ZONE) with seconds.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def rubles(kopecks: int | None) -> str:
    """80000 -> "800.00 ₽"; None -> "—". Thousands are grouped with commas (1,250.50 ₽)."""
    if kopecks is None:
        return "—"
    sign = "-" if kopecks < 0 else ""
    whole, cents = divmod(abs(int(kopecks)), 100)
    return f"{sign}{whole:,}.{cents:02d} ₽"


def rubles_html(kopecks: int | None) -> SafeString:
    """rubles() in a span that never wraps between the amount and the sign."""
    return format_html('<span class="money">{}</span>', rubles(kopecks))


def timestamp(value: datetime | None) -> str:
    """A datetime in the admin's time zone, with seconds: "2026-11-27 22:02:13"; None -> "—"."""
    if value is None:
        return "—"
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime(TIMESTAMP_FORMAT)


def duration(seconds: float) -> str:
    """A human length of time: "45 s", "12 min", "3 h 05 min", "2 d 4 h"."""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def provider_amount(amount: int | None) -> str:
    """An amount in a provider's own currency (IDR for Digiflazz): grouped, no currency sign."""
    return "unknown" if amount is None else f"{amount:,}"
