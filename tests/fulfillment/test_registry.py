"""The settings-driven provider registry and the system check that refuses a provider that cannot work."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from fulfillment import registry
from fulfillment.providers.mock import MockProvider
from tests.conftest import ScriptedProvider

VALID = "Valid names: digiflazz, mock."


@pytest.mark.parametrize("factory", [registry.get_fulfillment_provider, registry.create_fulfillment_provider])
def test_unknown_name_raises_naming_the_valid_names(factory):
    with pytest.raises(registry.UnknownProvider) as excinfo:
        factory("nope")
    message = str(excinfo.value)
    assert "Unknown fulfillment provider 'nope'." in message
    assert VALID in message
    assert "Set FULFILLMENT_PROVIDER to one of them" in message


def test_unknown_provider_is_an_improperly_configured():
    assert issubclass(registry.UnknownProvider, ImproperlyConfigured)


@override_settings(FULFILLMENT_PROVIDER="nope")
def test_unknown_default_provider_raises():
    with pytest.raises(registry.UnknownProvider, match=VALID):
        registry.get_fulfillment_provider()


@override_settings(FULFILLMENT_PROVIDERS={"broken": "fulfillment.providers.nowhere.Missing"})
def test_provider_path_that_cannot_be_imported():
    with pytest.raises(ImproperlyConfigured, match=r"'broken' points at 'fulfillment.providers.nowhere.Missing'"):
        registry.get_provider_class("broken")


@override_settings(FULFILLMENT_PROVIDERS={"odd": "fulfillment.registry.provider_names"})
def test_provider_path_that_is_not_a_provider():
    with pytest.raises(ImproperlyConfigured, match="is not a FulfillmentProvider subclass"):
        registry.get_provider_class("odd")


def test_registered_name_gives_a_shared_instance_built_from_settings(settings):
    settings.MOCK_FULFILLMENT_SUCCESS_RATE = 0.5
    settings.MOCK_FULFILLMENT_DELAY_MAX = 2.0
    provider = registry.get_fulfillment_provider("mock")
    assert isinstance(provider, MockProvider)
    assert (provider.success_rate, provider.delay_max) == (0.5, 2.0)
    assert registry.get_fulfillment_provider() is provider
    assert registry.create_fulfillment_provider("mock") is not provider


def test_changing_settings_drops_the_shared_instances(settings):
    first = registry.get_fulfillment_provider("mock")
    settings.MOCK_FULFILLMENT_SUCCESS_RATE = 0.25
    second = registry.get_fulfillment_provider("mock")
    assert second is not first and second.success_rate == 0.25


def test_a_new_provider_is_only_a_settings_entry(scripted_provider):
    assert registry.get_fulfillment_provider() is scripted_provider
    assert "scripted" in registry.provider_names()
    assert registry.get_provider_class("scripted") is ScriptedProvider


def test_misconfigured_provider_is_refused_with_the_variable_to_fix(settings):
    settings.MOCK_FULFILLMENT_DELAY_MIN = 5.0
    settings.MOCK_FULFILLMENT_DELAY_MAX = 1.0
    with pytest.raises(ImproperlyConfigured, match=r"'mock' is not configured: MOCK_FULFILLMENT_DELAY_MIN \(5.0\)"):
        registry.create_fulfillment_provider("mock")
    with pytest.raises(ImproperlyConfigured, match="MOCK_FULFILLMENT_DELAY_MIN"):
        registry.validate_provider_settings()


def test_valid_settings_have_no_problems():
    assert registry.configuration_problems() == []
    registry.validate_provider_settings()


@override_settings(FULFILLMENT_PROVIDER="nope")
def test_manage_check_fails_on_an_unknown_provider():
    with pytest.raises(SystemCheckError) as excinfo:
        call_command("check")
    message = str(excinfo.value)
    assert "fulfillment.E001" in message
    assert "Unknown fulfillment provider 'nope'" in message
    assert VALID in message


@override_settings(MOCK_FULFILLMENT_SUCCESS_RATE=1.5)
def test_manage_check_fails_on_a_misconfigured_provider():
    with pytest.raises(SystemCheckError, match="MOCK_FULFILLMENT_SUCCESS_RATE must be between 0 and 1"):
        call_command("check")


def test_manage_check_passes_with_the_test_settings(capsys):
    call_command("check")
    assert "no issues" in capsys.readouterr().out
