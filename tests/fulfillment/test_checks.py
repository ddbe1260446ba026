"""System checks of the fulfillment settings."""

from django.core import checks


def _ids() -> list[str]:
    return [message.id for message in checks.run_checks()]


def test_unsigned_digiflazz_callbacks_are_warned_about(settings):
    settings.FULFILLMENT_PROVIDER = "digiflazz"
    settings.DIGIFLAZZ_USERNAME, settings.DIGIFLAZZ_API_KEY = "buyer", "k-not-shown"
    settings.DIGIFLAZZ_WEBHOOK_SECRET = ""
    assert "fulfillment.W002" in _ids()
    settings.DIGIFLAZZ_WEBHOOK_SECRET = "whsec"
    assert "fulfillment.W002" not in _ids()


def test_mock_provider_needs_no_webhook_secret(settings):
    settings.FULFILLMENT_PROVIDER = "mock"
    assert "fulfillment.W002" not in _ids()
