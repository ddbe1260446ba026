"""Money and time as the console writes them: roubles with two decimals, timestamps with seconds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import translation

from fulfillment_site.console.formatting import duration, rubles, timestamp


@pytest.mark.parametrize(
    ("language", "kopecks", "text"),
    [
        ("en", 80000, "800.00 ₽"),
        ("en", 5, "0.05 ₽"),
        ("en", 0, "0.00 ₽"),
        ("en", 123456789, "1,234,567.89 ₽"),
        ("en", -1050, "-10.50 ₽"),
        ("en", None, "—"),
        ("ru", 110000, "1 100,00 ₽"),
        ("ru", 123456789, "1 234 567,89 ₽"),
        ("ru", 5, "0,05 ₽"),
        ("ru", -1050, "-10,50 ₽"),
        ("ru", None, "—"),
    ],
)
def test_rubles_follow_the_language(language, kopecks, text):
    with translation.override(language):
        assert rubles(kopecks) == text


@pytest.mark.parametrize(("language", "text"), [("en", "2026-11-27 22:02:13 MSK"), ("ru", "27.11.2026 22:02:13 МСК")])
def test_timestamp_has_seconds_and_says_its_zone(settings, language, text):
    settings.TIME_ZONE = "Europe/Moscow"
    with translation.override(language):
        assert timestamp(datetime(2026, 11, 27, 19, 2, 13, tzinfo=UTC)) == text
        assert timestamp(None) == "—"


def test_a_zone_without_a_name_is_given_as_its_offset(settings):
    settings.TIME_ZONE = "Asia/Dubai"  # tzdata names it "+04"
    with translation.override("en"):
        assert timestamp(datetime(2026, 11, 27, 19, 2, 13, tzinfo=UTC)) == "2026-11-27 23:02:13 UTC+04:00"


def test_the_default_time_zone_is_moscow_and_the_default_language_russian(monkeypatch):
    from tests.test_settings import load_settings

    loaded = load_settings(monkeypatch)
    assert loaded["TIME_ZONE"] == "Europe/Moscow"
    assert loaded["LANGUAGE_CODE"] == "ru"
    assert loaded["LANGUAGES"][0][0] == "ru"


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5 s"), (125, "2 min"), (3 * 3600 + 300, "3 h 05 min"), (50 * 3600, "2 d 2 h")]
)
def test_duration(seconds, text):
    assert duration(seconds) == text
