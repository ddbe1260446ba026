"""System checks: `manage.py check` (and runserver, migrate) fail on a provider that cannot work."""

from django.core import checks

from fulfillment.registry import configuration_problems


@checks.register()
def fulfillment_provider_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    return [
        checks.Error(problem, id="fulfillment.E001", hint="See .env.example and README 'Configuration'.")
        for problem in configuration_problems()
    ]
