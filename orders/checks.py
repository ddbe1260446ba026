"""System checks for the payment side: notifications must be verifiable; demo credentials and the
sandbox are for development only; the refund policy must be one we know."""

from django.conf import settings
from django.core import checks

from orders.services import PaymentConfigurationError, allowed_networks
from orders.services.notifications import demo_credentials_in_use


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
    try:
        allowed_networks()
    except PaymentConfigurationError as exc:
        return [checks.Error(str(exc), id="orders.E001", hint="Fix TBANK_ALLOWED_NETWORKS or leave it empty.")]
    return []


@checks.register()
def tbank_sandbox_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if getattr(settings, "TBANK_SANDBOX", False) and not settings.DEBUG:
        return [
            checks.Error(
                "TBANK_SANDBOX is on but DJANGO_DEBUG is off: the sandbox answers payments locally and must never "
                "run in production.",
                id="orders.E002",
                hint="Set TBANK_SANDBOX=false (production) or DJANGO_DEBUG=true (development).",
            )
        ]
    return []


@checks.register()
def public_base_url_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    url = getattr(settings, "PUBLIC_BASE_URL", "")
    if not url.startswith(("http://", "https://")):
        return [
            checks.Error(
                f"PUBLIC_BASE_URL is {url!r}: T-Bank's NotificationURL and the customer's links are built on it.",
                id="orders.E003",
                hint="Set it to the site's public origin, e.g. https://shop.example.com.",
            )
        ]
    return []


@checks.register()
def refund_policy_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if settings.REFUND_POLICY in ("auto", "staff"):
        return []
    return [
        checks.Error(
            f"REFUND_POLICY is {settings.REFUND_POLICY!r}; it must be auto or staff.",
            id="orders.E004",
            hint="auto refunds undeliverable units by itself; staff waits for the admin action.",
        )
    ]


@checks.register()
def tbank_demo_credentials_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    return [
        checks.Error(
            f"{name} is a published demo value (from .env.example or T-Bank's documentation) and DJANGO_DEBUG "
            "is off: anyone could sign payment notifications for this shop.",
            id="orders.E005",
            hint=f"Set {name} to your terminal's value from the T-Bank merchant portal.",
        )
        for name in demo_credentials_in_use()
    ]


@checks.register()
def checkout_gate_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    gate, threads = settings.CHECKOUT_MAX_IN_FLIGHT, settings.GUNICORN_THREADS
    zero = [name for name in ("CHECKOUT_MAX_IN_FLIGHT", "CHECKOUT_MAX_WORKING") if getattr(settings, name) < 1]
    if zero:
        return [
            checks.Error(
                f"{' and '.join(zero)} below 1: no order could ever be created.",
                id="orders.E006",
                hint=f"Leave them unset, or give at least 1 (keep CHECKOUT_MAX_IN_FLIGHT under {threads}).",
            )
        ]
    if threads > 1 and gate >= threads:
        return [
            checks.Warning(
                f"CHECKOUT_MAX_IN_FLIGHT ({gate}) is not below GUNICORN_THREADS ({threads}): customers waiting on "
                "a slow bank can take every thread, and T-Bank's notifications then wait behind them.",
                id="orders.W002",
                hint="Leave CHECKOUT_MAX_IN_FLIGHT unset (3/4 of the threads) or keep a few threads free.",
            )
        ]
    return []
