"""App configs: the console itself, and the admin app with the console's site as its default."""

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class ConsoleConfig(AppConfig):
    name = "fulfillment_site.console"
    label = "console"  # kept: its tables, migrations and permissions are named after it
    verbose_name = "Staff console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from fulfillment_site.console import signals  # noqa: F401, PLC0415 - registers receivers once the models are ready


class StaffAdminConfig(AdminConfig):
    """django.contrib.admin with StaffAdminSite: every `@admin.register` lands on the console's site."""

    default_site = "fulfillment_site.console.sites.StaffAdminSite"
