"""The Celery application: configured from Django settings (CELERY_* names)."""

import logging
import logging.config
import os
from collections.abc import Mapping
from pathlib import Path

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from fulfillment_site.logs import task_finished, task_started

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fulfillment_site.settings")

#: Periodic tasks that run every few seconds or minutes and usually find nothing: Celery's own INFO lines about
#: them (beat's "Sending due task", the worker's "received" and "succeeded") are dropped, so a quiet
#: system has a quiet log. The tasks log themselves when they find something.
QUIET_PERIODIC_TASKS = (
    "fulfillment.reconcile_paid_orders",
    "fulfillment.check_provider_accounts",
    "orders.reconcile_refunds",
    "orders.poll_payments",
    "orders.requeue_customer_emails",
    "console.send_staff_alerts",
)


class QuietPeriodicTasks(logging.Filter):
    """Drops those lines unless CELERY_LOG_PERIODIC_TASKS is set (read on first use: the logs
    are written long after Django's settings are loaded)."""

    _log_them: bool | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        if self._log_them is None:
            self._log_them = bool(getattr(settings, "CELERY_LOG_PERIODIC_TASKS", False))
        if self._log_them:
            return True
        message = record.getMessage()
        return not any(task in message for task in QUIET_PERIODIC_TASKS)


for _logger in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
    logging.getLogger(_logger).addFilter(QuietPeriodicTasks())

# Every task starts and ends with no order bound to its log lines (threads serve task after task).
task_prerun.connect(task_started, dispatch_uid="fulfillment_site.celery.task_started")
task_postrun.connect(task_finished, dispatch_uid="fulfillment_site.celery.task_finished")


def json_logs_wanted(*, environ: Mapping[str, str], env_file: Path) -> bool:
    """LOG_FORMAT=json, from the environment or .env: decided before the settings are loaded,
    because Celery sets up its logging only when nobody else does. Only LOG_FORMAT is read from
    .env, and the environment is left alone: the settings decide for themselves whether .env
    counts (the test suite sets DJANGO_IGNORE_DOTENV so a developer's .env cannot change it)."""
    value = environ.get("LOG_FORMAT")
    if value is None and env_file.exists() and not environ.get("DJANGO_IGNORE_DOTENV"):
        value = dotenv_value(env_file, "LOG_FORMAT")
    return (value or "").strip().lower() == "json"


def dotenv_value(path: Path, name: str) -> str | None:
    """The value `name` is given in the .env file at `path` (last assignment wins), or None."""
    found = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, raw = line.strip().removeprefix("export ").partition("=")
        if sep and key.strip() == name:
            found = raw.split(" #", 1)[0].strip().strip("'\"")
    return found


if json_logs_wanted(environ=os.environ, env_file=Path(__file__).resolve().parent.parent / ".env"):

    @setup_logging.connect
    def _log_through_django(loglevel=None, **kwargs) -> None:
        """The worker and beat write JSON lines through settings.LOGGING, like the web processes,
        instead of Celery's own format; `--loglevel` still sets the level."""
        logging.config.dictConfig(settings.LOGGING)
        if loglevel:
            logging.getLogger().setLevel(loglevel)


app = Celery("fulfillment_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule_periodic_tasks(sender: Celery, **kwargs) -> None:
    sender.add_periodic_task(
        float(settings.FULFILLMENT_RECONCILE_INTERVAL_SECONDS),
        sender.signature("fulfillment.reconcile_paid_orders"),
        name="reconcile paid orders",
    )
    sender.add_periodic_task(
        float(settings.PAYMENT_POLL_INTERVAL_SECONDS),
        sender.signature("orders.poll_payments"),
        name="poll T-Bank about payments that never notified",
    )
    sender.add_periodic_task(
        float(settings.EMAIL_SWEEP_INTERVAL_SECONDS),
        sender.signature("orders.requeue_customer_emails"),
        name="re-queue customer emails whose task was lost",
    )
    sender.add_periodic_task(
        float(settings.FULFILLMENT_RECONCILE_INTERVAL_SECONDS),
        sender.signature("orders.reconcile_refunds"),
        name="reconcile refunds",
    )
    sender.add_periodic_task(
        float(settings.PRICING_RATE_REFRESH_SECONDS),
        sender.signature("orders.refresh_exchange_rate"),
        name="refresh the exchange rate and reprice",
    )
    # Reads the problem counts (and ProviderAccount.balance) and emails staff; sends nothing
    # without STAFF_ALERT_EMAILS.
    sender.add_periodic_task(
        float(settings.STAFF_ALERT_INTERVAL_SECONDS),
        sender.signature("console.send_staff_alerts"),
        name="staff alerts",
    )
    if settings.DIGIFLAZZ_SYNC_INTERVAL_SECONDS > 0 and settings.DIGIFLAZZ_USERNAME and settings.DIGIFLAZZ_API_KEY:
        sender.add_periodic_task(
            # Digiflazz refuses the whole list more often than once per 5 minutes.
            float(max(settings.DIGIFLAZZ_SYNC_INTERVAL_SECONDS, 300)),
            sender.signature("fulfillment.sync_price_list"),
            name="sync the Digiflazz price list",
        )
    if settings.FULFILLMENT_ACCOUNT_CHECK_INTERVAL_SECONDS > 0:
        sender.add_periodic_task(
            float(settings.FULFILLMENT_ACCOUNT_CHECK_INTERVAL_SECONDS),
            sender.signature("fulfillment.check_provider_accounts"),
            name="check provider accounts",
        )


@worker_init.connect
def _refuse_to_start_misconfigured(**kwargs) -> None:
    # A worker with an unknown provider or missing credentials would fail every delivery;
    # stopping at startup with the reason is kinder than a queue of failed attempts.
    # Celery logs and swallows exceptions from signal handlers; SystemExit is not swallowed.
    # This module loads with the project package, before Django's app registry is ready, and the
    # registry imports the providers and their models.
    from fulfillment.registry import validate_provider_settings  # noqa: PLC0415 - see above

    try:
        validate_provider_settings()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"Worker not started: {exc}") from exc
