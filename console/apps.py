"""App configs: the console itself, and the admin app with the console's site as its default."""

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Staff console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from console import signals  # noqa: F401


class StaffAdminConfig(AdminConfig):
    """django.contrib.admin with StaffAdminSite: every `@admin.register` lands on the console's site."""

    default_site = "console.sites.StaffAdminSite"
