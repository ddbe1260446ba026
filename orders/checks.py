"""System checks for the payment side: warn when notifications cannot be verified, refuse demo
credentials outside development."""

from django.conf import settings
from django.core import checks


@checks.register()
def tbank_credentials_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    missing = [name for name in ("TBANK_TERMINAL_KEY", "TBANK_PASSWORD") if not getattr(settings, name)]
    if not missing:
        return []
    return [
        checks.Warning(
            f"{' and '.join(missing)} not set: the payment webhook answers 503 to every notification.",
            id="orders.W001",
            hint="Set them to the terminal key and password from the T-Bank merchant portal.",
        )
    ]


@checks.register()
def tbank_allowed_networks_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    from orders.services import PaymentConfigurationError, allowed_networks

    try:
        allowed_networks()
    except PaymentConfigurationError as exc:
        return [checks.Error(str(exc), id="orders.E001", hint="Fix TBANK_ALLOWED_NETWORKS or leave it empty.")]
    return []


@checks.register()
def tbank_demo_credentials_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    from orders.services.notifications import demo_credentials_in_use

    return [
        checks.Error(
            f"{name} is a published demo value (from .env.example or T-Bank's documentation) and DJANGO_DEBUG "
            "is off: anyone could sign payment notifications for this shop.",
            id="orders.E002",
            hint=f"Set {name} to your terminal's value from the T-Bank merchant portal.",
        )
        for name in demo_credentials_in_use()
    ]
