"""The published demo T-Bank credentials (.env.example's, the bank's documentation examples) are
refused outside development: by `manage.py check` (orders.E005) and by the webhook itself,
since gunicorn and the workers do not run system checks."""

from __future__ import annotations

import json

import pytest
from django.core import checks

from orders.models import PaymentNotification
from orders.services.notifications import DEMO_CREDENTIALS
from tests.conftest import WEBHOOK_URL, notification

pytestmark = pytest.mark.django_db

DEMO_CASES = [(name, value) for name, values in DEMO_CREDENTIALS.items() for value in sorted(values)]


def _e002() -> list[checks.CheckMessage]:
    return [message for message in checks.run_checks() if message.id == "orders.E005"]


def test_env_example_values_are_in_the_demo_list():
    from pathlib import Path

    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    values = dict(line.split("=", 1) for line in example.splitlines() if line.startswith("TBANK_"))
    assert values["TBANK_PASSWORD"] in DEMO_CREDENTIALS["TBANK_PASSWORD"]
    assert values["TBANK_TERMINAL_KEY"] in DEMO_CREDENTIALS["TBANK_TERMINAL_KEY"]


@pytest.mark.parametrize(("name", "value"), DEMO_CASES)
def test_a_demo_value_is_an_error_with_debug_off(settings, name, value):
    settings.DEBUG = False
    setattr(settings, name, value)
    errors = _e002()
    assert len(errors) == 1 and errors[0].level == checks.ERROR
    assert name in errors[0].msg and value not in errors[0].msg


def test_demo_values_are_fine_in_development(settings):
    settings.DEBUG = True
    settings.TBANK_PASSWORD = "demo-password-change-me"
    settings.TBANK_TERMINAL_KEY = "DemoTerminal"
    assert _e002() == []


def test_the_webhook_refuses_to_verify_with_a_demo_password(settings, order_factory, client):
    settings.DEBUG = False
    settings.TBANK_PASSWORD = "demo-password-change-me"
    order = order_factory()

    response = client.post(WEBHOOK_URL, data=json.dumps(notification(order)), content_type="application/json")

    assert response.status_code == 503
    assert b"not configured" in response.content
    assert not PaymentNotification.objects.exists()
    assert order.__class__.objects.get(pk=order.pk).status == "new"


def test_the_webhook_accepts_the_demo_password_in_development(settings, order_factory, client):
    settings.DEBUG = True
    settings.TBANK_PASSWORD = "demo-password-change-me"
    order = order_factory()
    response = client.post(WEBHOOK_URL, data=json.dumps(notification(order)), content_type="application/json")
    assert (response.status_code, response.content) == (200, b"OK")
