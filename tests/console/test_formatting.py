"""Money and time as the console writes them: roubles with two decimals, timestamps with seconds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fulfillment_site.console.formatting import duration, rubles, timestamp


@pytest.mark.parametrize(
    ("kopecks", "text"),
    [
        (80000, "800.00 ₽"),
        (5, "0.05 ₽"),
        (0, "0.00 ₽"),
        (123456789, "1,234,567.89 ₽"),
        (-1050, "-10.50 ₽"),
        (None, "—"),
    ],
)
def test_rubles(kopecks, text):
    assert rubles(kopecks) == text


def test_timestamp_has_seconds_in_the_admin_time_zone(settings):
    settings.TIME_ZONE = "Europe/Moscow"
    assert timestamp(datetime(2026, 11, 27, 19, 2, 13, tzinfo=UTC)) == "2026-11-27 22:02:13"
    assert timestamp(None) == "—"


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5 s"), (125, "2 min"), (3 * 3600 + 300, "3 h 05 min"), (50 * 3600, "2 d 2 h")]
)
def test_duration(seconds, text):
    assert duration(seconds) == text
