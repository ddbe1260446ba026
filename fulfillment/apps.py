"""App configuration for fulfillment: wires the order signals and the settings checks."""

from django.apps import AppConfig


class FulfillmentConfig(AppConfig):
    name = "fulfillment"
    verbose_name = "Fulfillment"

    def ready(self) -> None:
        from fulfillment import checks, receivers  # noqa: F401  (registers checks and signal receivers)
