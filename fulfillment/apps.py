"""App configuration for fulfillment: wires the order signals and the settings checks."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FulfillmentConfig(AppConfig):
    name = "fulfillment"
    verbose_name = _("Fulfillment")

    def ready(self) -> None:
        # Imported once the models are ready: checks, signal receivers and Celery tasks register
        # themselves (services send tasks by name: fulfillment_site.dispatch).
        from fulfillment import checks, receivers, tasks  # noqa: F401, PLC0415 - they need the models, ready only now
