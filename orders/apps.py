"""App configuration for orders."""

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        from orders import checks, receivers  # noqa: F401  (registers the checks and signal receivers)
