"""Log formats: JSON lines (LOG_FORMAT=json), the order a line is about, secrets masked."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from fulfillment_site import logs
from fulfillment_site.logs import JsonFormatter, OrderContextFilter, PlainFormatter, logging_config, order_logging


def record(message="Order %s paid", *args, exc_info=None, **extra) -> logging.LogRecord:
    rec = logging.getLogger("orders.services").makeRecord(
        "orders.services", logging.WARNING, __file__, 1, message, args or ("A1",), exc_info, extra=extra or None
    )
    OrderContextFilter().filter(rec)
    return rec


@pytest.fixture(autouse=True)
def no_order_bound():
    logs.clear_order()
    yield
    logs.clear_order()


def test_a_json_line_is_one_object_with_time_level_logger_and_message():
    line = JsonFormatter().format(record())

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "orders.services"
    assert entry["message"] == "Order A1 paid"
    assert entry["time"].endswith("+00:00") and "T" in entry["time"]
    assert "order" not in entry  # not about an order: no field rather than a null


def test_the_bound_order_is_on_every_line_inside_and_gone_after():
    with order_logging("9711ab0e1d8cc594e6411450", pk=7):
        inside = json.loads(JsonFormatter().format(record()))
        with order_logging("other-order"):
            nested = json.loads(JsonFormatter().format(record()))
        back = json.loads(JsonFormatter().format(record()))
    after = json.loads(JsonFormatter().format(record()))

    assert inside["order"] == "9711ab0e1d8cc594e6411450"
    assert nested["order"] == "other-order"
    assert back["order"] == "9711ab0e1d8cc594e6411450"
    assert "order" not in after


def test_an_explicit_order_wins_over_the_bound_one():
    with order_logging("bound"):
        entry = json.loads(JsonFormatter().format(record(order="explicit")))
    assert entry["order"] == "explicit"


def test_a_task_starts_with_no_order_and_gives_back_what_was_bound_before():
    logs.bind_order("request-order")
    logs.task_started()
    assert logs.current_order() is None
    logs.bind_order("task-order")
    logs.task_finished()
    assert logs.current_order() == "request-order"


def test_a_traceback_stays_inside_the_one_line():
    try:
        raise ValueError("provider said no")
    except ValueError:
        rec = record(exc_info=sys.exc_info())
    line = JsonFormatter().format(rec)

    assert "\n" not in line
    assert "ValueError: provider said no" in json.loads(line)["exception"]


def test_secret_settings_are_masked_in_both_formats(settings):
    settings.TBANK_PASSWORD = "bank-terminal-pass-1"
    settings.CELERY_BROKER_URL = "redis://:broker-pass-2@redis.internal:6379/0"
    settings.DIGIFLAZZ_API_KEY = "dfz-key-3"
    said = "Password=bank-terminal-pass-1 url=redis://:broker-pass-2@redis.internal key dfz-key-3"
    try:
        raise RuntimeError("trace shows bank-terminal-pass-1")
    except RuntimeError:
        rec = record("refused: %s", said, exc_info=sys.exc_info())

    for formatter in (JsonFormatter(), PlainFormatter("%(levelname)s %(message)s")):
        line = formatter.format(rec)
        assert "bank-terminal-pass-1" not in line and "broker-pass-2" not in line and "dfz-key-3" not in line
        assert logs.MASK in line and "redis.internal" in line


def test_the_plain_format_names_the_order_too():
    with order_logging("9711ab0e"):
        line = PlainFormatter("%(levelname)s %(message)s").format(record())
    assert line == "WARNING Order A1 paid [order 9711ab0e]"


def test_log_format_is_plain_or_json():
    assert logging_config(log_format="json", level="INFO")["handlers"]["console"]["formatter"] == "json"
    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT must be plain or json"):
        logging_config(log_format="xml", level="INFO")
