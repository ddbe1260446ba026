"""How the console writes money and times: the shop-wide helpers (fulfillment_site.display) under the
names the console's list columns and detail pages use."""

from __future__ import annotations

from datetime import datetime

from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from fulfillment_site.display import NBSP, moment, money, russian


def rubles(kopecks: int | None) -> str:
    """80000 -> "800,00 ₽" in Russian, "800.00 ₽" in English; None -> "—" (fulfillment_site.display.money)."""
    return money(kopecks)


def rubles_html(kopecks: int | None) -> SafeString:
    """rubles() in a span that never wraps between the amount and the sign."""
    return format_html('<span class="money">{}</span>', rubles(kopecks))


def timestamp(value: datetime | None) -> str:
    """A datetime in TIME_ZONE with seconds and its zone: "27.11.2026 22:02:13 МСК"; None -> "—"."""
    return moment(value)


def duration(seconds: float) -> str:
    """A human length of time: "45 s", "12 min", "3 h 05 min", "2 d 4 h"."""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return _("%(seconds)d s") % {"seconds": seconds}
    minutes = seconds // 60
    if minutes < 60:
        return _("%(minutes)d min") % {"minutes": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return _("%(hours)d h %(minutes)02d min") % {"hours": hours, "minutes": minutes}
    days, hours = divmod(hours, 24)
    return _("%(days)d d %(hours)d h") % {"days": days, "hours": hours}


def provider_amount(amount: int | None) -> str:
    """An amount in a provider's own currency (IDR for Digiflazz): grouped, no currency sign."""
    if amount is None:
        return _("unknown")
    grouped = f"{amount:,}"
    return grouped.replace(",", NBSP) if russian() else grouped
