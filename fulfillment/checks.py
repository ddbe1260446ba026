"""System checks: `manage.py check` (and runserver, migrate) fail on a provider that cannot work."""

from django.conf import settings
from django.core import checks

from fulfillment.registry import configuration_problems


@checks.register()
def fulfillment_provider_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    return [
        checks.Error(problem, id="fulfillment.E001", hint="See .env.example and README 'Configuration'.")
        for problem in configuration_problems()
    ]


@checks.register()
def digiflazz_webhook_secret_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if settings.FULFILLMENT_PROVIDER != "digiflazz" or settings.DIGIFLAZZ_WEBHOOK_SECRET:
        return []
    return [
        checks.Warning(
            "DIGIFLAZZ_WEBHOOK_SECRET is not set: Digiflazz callbacks cannot be verified, so each one only "
            "triggers a status check instead of settling its unit.",
            id="fulfillment.W002",
            hint="Set the webhook secret in the Digiflazz panel and the same value in DIGIFLAZZ_WEBHOOK_SECRET.",
        )
    ]
