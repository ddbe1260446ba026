"""Celery tasks of the staff console: thin wrappers over console.alerts."""

from celery import shared_task

from fulfillment_site.console.alerts import staff_alerts_send


@shared_task(name="console.send_staff_alerts", ignore_result=True)
def send_staff_alerts() -> list[str]:
    """Periodic: email staff about present problems (each at most once per repeat window)."""
    return staff_alerts_send()
