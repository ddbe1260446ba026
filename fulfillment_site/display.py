"""How money and times are written for people, in one place: customer pages, emails and the admin
all call these, so "1 100,00 ₽" and "27.11.2026 22:02:13 МСК" read the same wherever they appear.

Both follow the active language (django.utils.translation): Russian writes money as
"1 100,00 ₽" and dates day first; English as "1,100.00 ₽" and ISO dates. Every time is in
TIME_ZONE (Moscow by default) with seconds, and names its zone, so nobody has to guess it.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone, translation

#: Between the thousands and before the currency sign: a plain space, so the amount reads and copies as
#: "1 100,00 ₽"; HTML keeps it on one line with the `money` class (white-space: nowrap).
NBSP = " "
#: The zone names Russian readers know by their Russian abbreviation.
RUSSIAN_ZONE_NAMES = {"MSK": "МСК", "UTC": "UTC"}


def russian(language: str | None = None) -> bool:
    """Whether `language` (default: the active one) is Russian."""
    return (language or translation.get_language() or "").lower().startswith("ru")


def money(kopecks: int | None, *, language: str | None = None) -> str:
    """110000 -> "1 100,00 ₽" (Russian) or "1,100.00 ₽" (English); None -> "—"."""
    if kopecks is None:
        return "—"
    sign = "-" if kopecks < 0 else ""
    whole, cents = divmod(abs(int(kopecks)), 100)
    if russian(language):
        grouped = f"{whole:,}".replace(",", NBSP)
        return f"{sign}{grouped},{cents:02d}{NBSP}₽"
    return f"{sign}{whole:,}.{cents:02d}{NBSP}₽"


def zone_name(value: datetime, *, language: str | None = None) -> str:
    """The abbreviation of `value`'s zone as the reader knows it: "МСК"/"MSK", "UTC", else the offset."""
    name = value.tzname() or ""
    if not name or name[0] in "+-":
        offset = value.strftime("%z")
        name = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    if russian(language):
        return RUSSIAN_ZONE_NAMES.get(name, name)
    return name


def moment(value: datetime | None, *, language: str | None = None) -> str:
    """A point in time in TIME_ZONE, with seconds and its zone: "27.11.2026 22:02:13 МСК" (Russian),
    "2026-11-27 22:02:13 MSK" (English); None -> "—"."""
    if value is None:
        return "—"
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    value = timezone.localtime(value)
    pattern = "%d.%m.%Y %H:%M:%S" if russian(language) else "%Y-%m-%d %H:%M:%S"
    return f"{value.strftime(pattern)} {zone_name(value, language=language)}"
