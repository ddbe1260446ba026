"""App configuration for fulfillment: wires the order signals and the settings checks."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FulfillmentConfig(AppConfig):
    name = "fulfillment"
    verbose_name = _("Fulfillment")

    def ready(self) -> None:
        from fulfillment import checks, receivers  # noqa: F401  (registers checks and signal receivers)
