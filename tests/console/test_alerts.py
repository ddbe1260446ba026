"""Staff alert emails: every problem on the dashboard, each at most once per repeat window across
processes, sent by the periodic Celery task and never by a request."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from fulfillment.models import ProviderAccount
from fulfillment.services import provider_halt
from fulfillment_site.console.alerts import staff_alerts_send
from fulfillment_site.console.models import StaffAlert
from fulfillment_site.console.tasks import send_staff_alerts
from tests.conftest import notification


@pytest.fixture
def alerts_on(settings):
    settings.STAFF_ALERT_EMAILS = ["ops@example.com", "lead@example.com"]
    settings.STAFF_CONSOLE_URL = "https://shop.example.com"
    settings.STAFF_ALERT_REPEAT_MINUTES = 60
    return settings


def test_nothing_is_sent_without_recipients(failed_order, settings):
    settings.STAFF_ALERT_EMAILS = []
    assert staff_alerts_send() == []
    assert mail.outbox == []


def test_nothing_is_sent_while_nothing_is_wrong(alerts_on, paid_order_factory):
    paid_order_factory()
    assert staff_alerts_send() == []
    assert mail.outbox == []


def test_one_email_names_every_problem_with_what_to_do_and_where(
    alerts_on, failed_order, order_factory, post_notification
):
    provider_halt(provider="digiflazz", code="41", reason="Signature rejected: check DIGIFLAZZ_API_KEY.")
    alerts_on.PROVIDER_BALANCE_ALERT = 500_000
    ProviderAccount.objects.create(provider="digiflazz", balance=120_000)
    partly_refunded = order_factory(price=10000)
    post_notification(notification(partly_refunded, PaymentId=1))
    # A partial refund made in the bank's portal that no units' prices add up to: the notification
    # is for review and the order is flagged (its purchases stop) until staff decide.
    post_notification(notification(partly_refunded, status="PARTIAL_REFUNDED", PaymentId=1, Amount=5000))

    sent = send_staff_alerts.delay().get()

    problems = ["failed_units", "low_balance", "notifications_to_review", "orders_flagged", "provider_halts"]
    assert sorted(sent) == problems
    (email,) = mail.outbox
    assert email.to == ["ops@example.com", "lead@example.com"]
    assert "units failed, waiting for staff (1)" in email.subject
    assert "digiflazz: Signature rejected: check DIGIFLAZZ_API_KEY." in email.body
    assert "digiflazz: 120,000 (alert under 500,000)" in email.body
    assert "https://shop.example.com/admin/orders/order/?attention=failed_units" in email.body
    assert "What to do: Fix the cause" in email.body


def test_each_problem_is_sent_at_most_once_per_window(alerts_on, failed_order, paid_order_factory):
    assert staff_alerts_send() == ["failed_units"]
    assert staff_alerts_send() == []  # the same hour: nothing

    provider_halt(provider="mock", code="41", reason="Bad key.")
    assert staff_alerts_send() == ["provider_halts"]  # a new problem is sent at once
    assert len(mail.outbox) == 2

    StaffAlert.objects.filter(problem="failed_units").update(last_sent_at=timezone.now() - timedelta(minutes=61))
    assert staff_alerts_send() == ["failed_units"]  # still there an hour later: reminded
    assert len(mail.outbox) == 3


def test_a_claim_taken_elsewhere_is_respected(alerts_on, failed_order):
    # Another worker sent this one a minute ago: the row is shared, so this process stays silent.
    StaffAlert.objects.create(problem="failed_units", last_sent_at=timezone.now() - timedelta(minutes=1))
    assert staff_alerts_send() == []
    assert mail.outbox == []


def test_a_failed_send_gives_the_claim_back(alerts_on, failed_order, monkeypatch):
    import fulfillment_site.console.alerts

    def broken(*args, **kwargs):
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr(fulfillment_site.console.alerts, "send_mail", broken)
    with pytest.raises(ConnectionRefusedError):
        staff_alerts_send()
    assert StaffAlert.objects.get(problem="failed_units").last_sent_at is None

    monkeypatch.undo()
    assert staff_alerts_send() == ["failed_units"]  # the next run sends it


def test_the_alert_task_is_scheduled():
    from fulfillment_site.celery import app

    app.loader.import_default_modules()
    schedule = app.conf.beat_schedule
    assert any(entry["task"] == "console.send_staff_alerts" for entry in schedule.values())


def test_the_webhook_sends_no_email(alerts_on, order_factory, post_notification):
    order = order_factory()
    post_notification(notification(order, PaymentId=1))
    post_notification(notification(order, PaymentId=2))  # needs review: a problem, but not mailed here
    assert mail.outbox == []
