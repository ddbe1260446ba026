"""The settings-driven provider registry.

`settings.FULFILLMENT_PROVIDERS` maps names to dotted paths of FulfillmentProvider
subclasses; `settings.FULFILLMENT_PROVIDER` names the one in use. Adding a provider is a
settings entry, never an edit here.
"""

from __future__ import annotations

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from fulfillment.providers.base import FulfillmentProvider

_instances: dict[str, FulfillmentProvider] = {}
_lock = threading.Lock()


class UnknownProvider(ImproperlyConfigured):
    """A provider name that is not registered."""


def provider_names() -> list[str]:
    return sorted(settings.FULFILLMENT_PROVIDERS)


def get_provider_class(name: str) -> type[FulfillmentProvider]:
    paths = settings.FULFILLMENT_PROVIDERS
    if name not in paths:
        raise UnknownProvider(
            f"Unknown fulfillment provider {name!r}. Valid names: {', '.join(provider_names())}. "
            "Set FULFILLMENT_PROVIDER to one of them, or register a new one in FULFILLMENT_PROVIDERS "
            "(FULFILLMENT_EXTRA_PROVIDERS=name=dotted.path in the environment)."
        )
    try:
        cls = import_string(paths[name])
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"Fulfillment provider {name!r} points at {paths[name]!r}, which cannot be imported: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, FulfillmentProvider)):
        raise ImproperlyConfigured(
            f"Fulfillment provider {name!r} ({paths[name]}) is not a FulfillmentProvider subclass."
        )
    return cls


def create_fulfillment_provider(name: str) -> FulfillmentProvider:
    """A new instance of the provider registered as `name`, checked for missing settings."""
    cls = get_provider_class(name)
    errors = cls.configuration_errors()
    if errors:
        raise ImproperlyConfigured(f"Fulfillment provider {name!r} is not configured: " + " ".join(errors))
    return cls.from_settings()


def get_fulfillment_provider(name: str | None = None) -> FulfillmentProvider:
    """The shared instance of provider `name` (default: settings.FULFILLMENT_PROVIDER)."""
    name = name or settings.FULFILLMENT_PROVIDER
    provider = _instances.get(name)
    if provider is None:
        with _lock:
            provider = _instances.get(name)
            if provider is None:
                provider = _instances[name] = create_fulfillment_provider(name)
    return provider


def configuration_problems() -> list[str]:
    """Everything wrong with the provider settings, as messages that say how to fix it."""
    try:
        cls = get_provider_class(settings.FULFILLMENT_PROVIDER)
    except ImproperlyConfigured as exc:
        return [str(exc)]
    return [f"FULFILLMENT_PROVIDER={settings.FULFILLMENT_PROVIDER}: {error}" for error in cls.configuration_errors()]


def validate_provider_settings() -> None:
    """Raise ImproperlyConfigured when the configured provider cannot work (used at startup)."""
    problems = configuration_problems()
    if problems:
        raise ImproperlyConfigured(" ".join(problems))


def _reset_instances(**kwargs) -> None:
    _instances.clear()


setting_changed.connect(_reset_instances)
