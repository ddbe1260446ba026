"""The Celery application: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fulfillment_site.settings")

app = Celery("fulfillment_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule_periodic_tasks(sender: Celery, **kwargs) -> None:
    from django.conf import settings

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
    # Reads the problem counts (and ProviderAccount.balance) and emails staff; sends nothing
    # without STAFF_ALERT_EMAILS.
    sender.add_periodic_task(
        float(settings.STAFF_ALERT_INTERVAL_SECONDS),
        sender.signature("console.send_staff_alerts"),
        name="staff alerts",
    )


@worker_init.connect
def _refuse_to_start_misconfigured(**kwargs) -> None:
    # A worker with an unknown provider or missing credentials would fail every delivery;
    # stopping at startup with the reason is kinder than a queue of failed attempts.
    # Celery logs and swallows exceptions from signal handlers; SystemExit is not swallowed.
    from django.core.exceptions import ImproperlyConfigured

    from fulfillment.registry import validate_provider_settings

    try:
        validate_provider_settings()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"Worker not started: {exc}") from exc
