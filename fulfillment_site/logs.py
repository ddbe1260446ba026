"""Log lines: which order a line is about, JSON lines (LOG_FORMAT=json), and secrets kept out.

Every line written while an order is being worked on carries that order's public id (the
OrderId the bank and the customer know) as `order`: the services that work on one order wrap
the work in `order_logging(public_id)`; a line about an order written elsewhere passes
`extra={"order": public_id}`. Requests and Celery tasks start with no order bound, so an id
never leaks from one request or task into the next one served by the same thread.

Both formats mask the values of the secret settings (passwords, API keys, the secret key, the
passwords inside service URLs) wherever they would appear, tracebacks included: a backstop for
a message or an exception that quotes one.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished, request_started

#: (pk, public id) of the order this thread is working on.
_current_order: ContextVar[tuple[int | None, str] | None] = ContextVar("current_order", default=None)

#: Finds an order's public id from its pk. This module sits below both apps and imports neither:
#: the orders app registers the lookup when it starts (orders.apps).
_order_public_id: Callable[[int], str | None] | None = None

#: Settings whose whole value is a secret.
SECRET_SETTINGS = ("SECRET_KEY", "TBANK_PASSWORD", "DIGIFLAZZ_API_KEY", "DIGIFLAZZ_WEBHOOK_SECRET", "METRICS_TOKEN")
#: Settings holding URLs whose password is a secret.
SECRET_URL_SETTINGS = ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "EMAIL_URL")
#: Shorter values are not masked: they would blank ordinary words out of every line.
MIN_SECRET_LENGTH = 6
MASK = "[secret]"


@contextmanager
def order_logging(public_id: str | None, *, pk: int | None = None) -> Iterator[None]:
    """Lines logged inside are about this order (nothing changes when `public_id` is None)."""
    if not public_id:
        yield
        return
    token = _current_order.set((pk, str(public_id)))
    try:
        yield
    finally:
        _current_order.reset(token)


def bind_order(public_id: str | None, *, pk: int | None = None) -> None:
    """Lines logged from here to the end of the current request or Celery task are about this
    order. For entry points only (a view, a task): anything else uses `order_logging`."""
    if public_id:
        _current_order.set((pk, str(public_id)))


def current_order() -> str | None:
    """The public id of the order being worked on in this thread, if any."""
    bound = _current_order.get()
    return bound[1] if bound else None


def order_log_extra(order_id: int) -> dict[str, str | None]:
    """`extra=` for a line about the order with this pk, written where only the pk is at hand."""
    bound = _current_order.get()
    if bound and bound[0] == order_id:
        return {"order": bound[1]}
    if _order_public_id is None:
        return {"order": None}
    try:
        return {"order": _order_public_id(order_id)}
    except Exception:  # noqa: BLE001 - a log line must never break the path that writes it (a failed transaction)
        return {"order": None}


def register_order_lookup(lookup: Callable[[int], str | None]) -> None:
    """Use `lookup(pk) -> public id` for lines about an order written where only its pk is known."""
    global _order_public_id
    _order_public_id = lookup


def clear_order(**_signal_kwargs) -> None:
    """Start and end of a request: no order is bound. At the end rather than when the views are
    done, because Django logs a 4xx or 5xx answer after them, still about the request's order."""
    _current_order.set(None)


_tasks = threading.local()


def task_started(**_signal_kwargs) -> None:
    """A Celery task starts with no order bound (connected to task_prerun in fulfillment_site/celery.py)."""
    stack = _tasks.__dict__.setdefault("tokens", [])
    stack.append(_current_order.set(None))


def task_finished(**_signal_kwargs) -> None:
    """A task is done: what was bound before it comes back (a task run eagerly inside a request)."""
    stack = _tasks.__dict__.get("tokens")
    if stack:
        try:
            _current_order.reset(stack.pop())
        except ValueError:  # set in another context: nothing to give back
            _current_order.set(None)


# Django's request signals fire around the whole handler, after the line it logs about a 4xx or 5xx.
request_started.connect(clear_order, dispatch_uid="fulfillment_site.logs.request_started")
request_finished.connect(clear_order, dispatch_uid="fulfillment_site.logs.request_finished")


class OrderContextFilter(logging.Filter):
    """Sets `record.order` from the bound order, unless the call passed `extra={"order": ...}`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "order", None) is None:
            record.order = current_order()
        return True


def _secret_values() -> list[str]:
    values = [str(getattr(settings, name, "") or "") for name in SECRET_SETTINGS]
    for name in SECRET_URL_SETTINGS:
        url = str(getattr(settings, name, "") or "")
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            values += [password, unquote(password)]
    database = getattr(settings, "DATABASES", {}).get("default", {})
    values.append(str(database.get("PASSWORD") or ""))
    values.append(str(getattr(settings, "EMAIL_HOST_PASSWORD", "") or ""))
    # Longest first: a secret that contains another is masked whole.
    return sorted({value for value in values if len(value) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


class _Redacting:
    """Masks secret setting values in the formatted line. They are read on first use: the
    formatters are built while the settings themselves are still being loaded."""

    _secrets: list[str] | None = None

    def redact(self, text: str) -> str:
        if self._secrets is None:
            try:
                self._secrets = _secret_values()
            except Exception:  # noqa: BLE001 - settings not ready yet: try again on the next line
                return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class PlainFormatter(_Redacting, logging.Formatter):
    """`time level logger message`, the order's public id appended when the line is about one."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        order = getattr(record, "order", None)
        if order:
            first, newline, rest = line.partition("\n")
            line = f"{first} [order {order}]{newline}{rest}"
        return self.redact(line)


class JsonFormatter(_Redacting, logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message; `order` when the
    line is about an order; the Celery task's name and id inside a task; the traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        order = getattr(record, "order", None)
        if order:
            entry["order"] = str(order)
        task = _current_task()
        if task is not None:
            entry["task"] = task.name
            entry["task_id"] = task.request.id
        entry["process"] = record.process
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return self.redact(json.dumps(entry, ensure_ascii=False, default=str))


def _current_task():
    try:
        from celery import current_task  # noqa: PLC0415 - settings load this module: keep Celery out of that path
    except ImportError:  # pragma: no cover - celery is a requirement
        return None
    task = current_task
    # The proxy is falsy (None behind it) outside a task.
    return task if task and getattr(task.request, "id", None) else None


def logging_config(*, log_format: str, level: str) -> dict:
    """The LOGGING setting for LOG_FORMAT (`plain` or `json`)."""
    if log_format not in ("plain", "json"):
        raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {log_format!r}.")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"order": {"()": "fulfillment_site.logs.OrderContextFilter"}},
        "formatters": {
            "plain": {
                "()": "fulfillment_site.logs.PlainFormatter",
                "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            },
            "json": {"()": "fulfillment_site.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": log_format, "filters": ["order"]},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}},
    }
