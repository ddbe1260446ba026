"""App configuration for orders."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = _("Orders and payments")

    def ready(self) -> None:
        from orders import checks, receivers  # noqa: F401  (registers the checks and signal receivers)
