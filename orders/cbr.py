"""The Central Bank of Russia's daily exchange rates (XML_daily.asp): fetch and read the rouble
price of one unit of a currency.

The XML lists each currency with its nominal (IDR: per 10,000 rupiah) and value in roubles with a
decimal comma, for the date in `ValCurs/@Date` (DD.MM.YYYY). The rate is value / nominal.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - parsed with the limits in rate_from_xml
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import requests
from django.conf import settings

#: A daily rates document is about 10 KB; anything far larger is not one.
MAX_BODY_BYTES = 1_000_000


class RateUnavailable(Exception):
    """No usable rate: the Central Bank could not be reached, or its answer is not a rates list."""


@dataclass(frozen=True)
class DailyRate:
    currency: str
    date: date
    rub_per_unit: Decimal


def rate_from_xml(body: bytes, *, currency: str) -> DailyRate:
    """The rate of `currency` in a daily rates document; RateUnavailable says what is wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise RateUnavailable(f"The Central Bank's answer is {len(body)} bytes, not a daily rates list.")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise RateUnavailable("The Central Bank's answer declares a DTD or entities; a rates list has none.")
    try:
        root = ET.fromstring(body)  # noqa: S314 - no DTD or entities (refused above), size capped
    except ET.ParseError as exc:
        raise RateUnavailable(f"The Central Bank's answer is not XML: {exc}.") from None
    try:
        day = datetime.strptime(root.attrib.get("Date", ""), "%d.%m.%Y").date()
    except ValueError:
        raise RateUnavailable(f"The Central Bank's answer has no valid Date ({root.attrib.get('Date')!r}).") from None
    for valute in root.iter("Valute"):
        if (valute.findtext("CharCode") or "").strip().upper() != currency.upper():
            continue
        try:
            nominal = Decimal((valute.findtext("Nominal") or "").strip())
            value = Decimal((valute.findtext("Value") or "").strip().replace(",", "."))
        except InvalidOperation:
            raise RateUnavailable(f"The Central Bank's {currency} entry has no readable Nominal or Value.") from None
        if not nominal.is_finite() or not value.is_finite() or nominal <= 0 or value <= 0:
            raise RateUnavailable(f"The Central Bank's {currency} entry has a Nominal or Value that is not positive.")
        return DailyRate(currency=currency.upper(), date=day, rub_per_unit=(value / nominal).quantize(Decimal("1e-12")))
    raise RateUnavailable(f"The Central Bank's daily rates of {day:%d.%m.%Y} have no {currency}.")


def daily_rate_fetch(*, currency: str = "IDR", session: requests.Session | None = None) -> DailyRate:
    """GET CBR_DAILY_URL and read `currency` from it."""
    getter = session or requests
    try:
        response = getter.get(settings.CBR_DAILY_URL, timeout=settings.CBR_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise RateUnavailable(f"The Central Bank's rates could not be fetched ({type(exc).__name__}).") from None
    if response.status_code != 200:
        raise RateUnavailable(f"The Central Bank answered HTTP {response.status_code} for the daily rates.")
    return rate_from_xml(response.content, currency=currency)
