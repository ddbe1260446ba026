"""App configuration for orders."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from fulfillment_site.logs import register_order_lookup


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = _("Orders and payments")

    def ready(self) -> None:
        # Imported once the models are ready: checks, signal receivers and Celery tasks register
        # themselves (services send tasks by name: fulfillment_site.dispatch).
        from orders import checks, receivers, tasks  # noqa: F401, PLC0415 - they need the models, ready only now
        from orders.models import order_public_id  # noqa: PLC0415 - the models are ready only now

        register_order_lookup(order_public_id)
