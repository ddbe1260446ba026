"""The codes email: recorded with FULFILLED, sent once after commit, retried on SMTP failure,
re-queued by the sweep, re-sent by staff with their own permission."""

from __future__ import annotations

import smtplib

import pytest
from django.contrib.admin.models import LogEntry
from django.core import mail
from django.test.utils import override_settings

from fulfillment.models import Delivery, DeliveryStatus
from orders.models import CustomerEmail, EmailState, Order
from orders.services import order_mark_fulfilled
from orders.services.emails import (
    EmailSendFailed,
    customer_email_enqueue,
    customer_email_send,
    customer_emails_requeue,
    email_retry_delay,
)
from orders.tasks import send_customer_email

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered_order(paid_order_factory):
    def make(**kwargs) -> Order:
        order = paid_order_factory(**kwargs)
        for unit in Delivery.objects.filter(order=order):
            Delivery.objects.filter(pk=unit.pk).update(status=DeliveryStatus.DELIVERED, serial=f"CODE-{unit.pk}")
        return order

    return make


def fulfil(order, capture) -> None:
    with capture(execute=True):
        order_mark_fulfilled(order_id=order.pk)


def test_fulfilling_sends_one_email_with_every_code_and_the_status_link(
    delivered_order, django_capture_on_commit_callbacks, settings
):
    settings.PUBLIC_BASE_URL = "https://shop.example.com"
    settings.DEFAULT_FROM_EMAIL = "shop@example.com"
    order = delivered_order(quantities=(2, 1), email="buyer@example.com")
    codes = sorted(Delivery.objects.filter(order=order).values_list("serial", flat=True))

    fulfil(order, django_capture_on_commit_callbacks)

    (message,) = mail.outbox
    assert message.to == ["buyer@example.com"] and message.from_email == "shop@example.com"
    assert order.public_id in message.subject
    html = message.alternatives[0][0]
    assert message.alternatives[0][1] == "text/html"
    for code in codes:
        assert code in message.body and code in html
    link = f"https://shop.example.com/orders/{order.public_id}/?token={order.access_token}"
    assert link in message.body and link.replace("&", "&amp;") in html
    email = CustomerEmail.objects.get()
    assert (email.kind, email.send_no, email.state, email.attempts) == ("codes", 0, EmailState.SENT, 1)
    assert email.sent_at is not None


def test_the_email_is_in_the_customers_language(delivered_order, django_capture_on_commit_callbacks):
    order = delivered_order()
    Order.objects.filter(pk=order.pk).update(language="ru")
    fulfil(order, django_capture_on_commit_callbacks)
    (message,) = mail.outbox
    assert "Ваши коды" in message.subject and "Здравствуйте" in message.body and "lang=ru" in message.body


def test_a_task_delivered_twice_sends_once(delivered_order, django_capture_on_commit_callbacks):
    order = delivered_order()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        order_mark_fulfilled(order_id=order.pk)
    email = CustomerEmail.objects.get()
    assert send_customer_email.run(email.pk) == "sent"
    assert send_customer_email.run(email.pk) == "already_sent"
    assert len(mail.outbox) == 1 and len(callbacks) == 1


def test_a_worker_holding_the_email_keeps_a_second_one_out(delivered_order, django_capture_on_commit_callbacks):
    order = delivered_order()
    with django_capture_on_commit_callbacks(execute=False):
        order_mark_fulfilled(order_id=order.pk)
    email = CustomerEmail.objects.get()
    from django.utils import timezone

    CustomerEmail.objects.filter(pk=email.pk).update(claimed_until=timezone.now() + timezone.timedelta(minutes=1))
    assert customer_email_send(email_id=email.pk) == "busy" and not mail.outbox


def test_the_event_enqueues_once_however_often_it_is_reported(delivered_order, django_capture_on_commit_callbacks):
    order = delivered_order()
    fulfil(order, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        customer_email_enqueue(order_id=order.pk, kind="codes")
        order_mark_fulfilled(order_id=order.pk)  # a repeat: no change, no signal
    assert CustomerEmail.objects.get().send_no == 0 and len(mail.outbox) == 1


class FlakySMTP:
    """An email backend that fails the first `failures` sends, then delivers to mail.outbox."""

    failures = 0

    def __init__(self, *args, **kwargs):
        from django.core.mail.backends.locmem import EmailBackend

        self.inner = EmailBackend(*args, **kwargs)

    def send_messages(self, messages):
        if FlakySMTP.failures:
            FlakySMTP.failures -= 1
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return self.inner.send_messages(messages)


@override_settings(EMAIL_BACKEND="tests.checkout.test_emails.FlakySMTP", EMAIL_MAX_ATTEMPTS=3)
def test_an_smtp_failure_is_recorded_and_the_retry_sends_it(delivered_order, django_capture_on_commit_callbacks):
    order = delivered_order()
    with django_capture_on_commit_callbacks(execute=False):
        order_mark_fulfilled(order_id=order.pk)
    email = CustomerEmail.objects.get()
    FlakySMTP.failures = 1

    with pytest.raises(EmailSendFailed) as failed:
        customer_email_send(email_id=email.pk)

    email.refresh_from_db()
    assert failed.value.attempts == 1 and not failed.value.final
    assert email.state == EmailState.PENDING and "SMTPServerDisconnected" in email.last_error
    assert email.claimed_until is None
    order.refresh_from_db()
    assert order.status == "fulfilled"  # an email failure never changes the order

    assert customer_email_send(email_id=email.pk) == "sent"
    email.refresh_from_db()
    assert email.state == EmailState.SENT and email.attempts == 2 and email.last_error == ""
    assert len(mail.outbox) == 1


@override_settings(EMAIL_BACKEND="tests.checkout.test_emails.FlakySMTP", EMAIL_MAX_ATTEMPTS=2)
def test_the_task_retries_with_backoff_and_gives_up_after_the_last_attempt(
    delivered_order, django_capture_on_commit_callbacks, monkeypatch, settings
):
    settings.EMAIL_RETRY_BASE_SECONDS = 60
    order = delivered_order()
    with django_capture_on_commit_callbacks(execute=False):
        order_mark_fulfilled(order_id=order.pk)
    email = CustomerEmail.objects.get()
    FlakySMTP.failures = 5
    retries = []

    class Retry(Exception):
        pass

    def fake_retry(*, countdown, exc):
        retries.append(countdown)
        return Retry()

    monkeypatch.setattr(send_customer_email, "retry", fake_retry)
    with pytest.raises(Retry):
        send_customer_email.run(email.pk)
    assert send_customer_email.run(email.pk) == "failed"
    email.refresh_from_db()
    assert retries == [60] and email.state == EmailState.FAILED and email.attempts == 2
    assert [email_retry_delay(n) for n in (1, 2, 3, 10)] == [60, 120, 240, 3600]
    FlakySMTP.failures = 0


def test_the_sweep_requeues_an_email_whose_task_was_lost(delivered_order, django_capture_on_commit_callbacks, settings):
    settings.EMAIL_STALE_AFTER_SECONDS = 0
    order = delivered_order()
    with django_capture_on_commit_callbacks(execute=False):  # the task message is lost
        order_mark_fulfilled(order_id=order.pk)
    assert not mail.outbox
    assert customer_emails_requeue() == [CustomerEmail.objects.get().pk]  # eager: sent right away
    assert len(mail.outbox) == 1
    assert customer_emails_requeue() == []


def test_a_broker_failure_at_publish_leaves_the_email_for_the_sweep(
    delivered_order, django_capture_on_commit_callbacks, monkeypatch
):
    order = delivered_order()

    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(send_customer_email, "delay", broken)
    fulfil(order, django_capture_on_commit_callbacks)
    order.refresh_from_db()
    assert order.status == "fulfilled" and CustomerEmail.objects.get().state == EmailState.PENDING


# --- staff re-send --------------------------------------------------------------------------


def resend(client, order):
    return client.post(
        "/admin/orders/order/",
        {"action": "resend_codes_email", "_selected_action": [order.pk]},
        follow=True,
    )


def test_staff_with_the_permission_can_send_the_codes_again(
    delivered_order, django_capture_on_commit_callbacks, staff_client_factory
):
    order = delivered_order()
    fulfil(order, django_capture_on_commit_callbacks)
    staff = staff_client_factory("orders.view_order", "orders.change_order", "orders.resend_customer_email")
    with django_capture_on_commit_callbacks(execute=True):
        response = resend(staff, order)
    assert response.status_code == 200 and "queued again" in response.content.decode()
    assert len(mail.outbox) == 2
    again = CustomerEmail.objects.get(send_no=1)
    assert again.state == EmailState.SENT and again.requested_by.startswith("staff")
    assert LogEntry.objects.filter(object_id=str(order.pk), change_message__contains="codes email").exists()


def test_staff_without_the_permission_cannot(delivered_order, django_capture_on_commit_callbacks, staff_client_factory):
    order = delivered_order()
    fulfil(order, django_capture_on_commit_callbacks)
    staff = staff_client_factory("orders.view_order", "orders.change_order")
    page = staff.get("/admin/orders/order/").content.decode()
    assert "resend_codes_email" not in page
    with django_capture_on_commit_callbacks(execute=True):
        resend(staff, order)
    assert CustomerEmail.objects.count() == 1 and len(mail.outbox) == 1


def test_an_unfulfilled_order_has_no_codes_to_resend(order_factory, staff_client_factory):
    order = order_factory()
    staff = staff_client_factory("orders.view_order", "orders.change_order", "orders.resend_customer_email")
    response = resend(staff, order)
    assert "Not sent" in response.content.decode() and not CustomerEmail.objects.exists()


def test_an_order_without_an_email_address_fails_its_email_and_nothing_else(
    delivered_order, django_capture_on_commit_callbacks
):
    order = delivered_order(email="")
    fulfil(order, django_capture_on_commit_callbacks)
    email = CustomerEmail.objects.get()
    assert email.state == EmailState.FAILED and "no email address" in email.last_error and not mail.outbox
    order.refresh_from_db()
    assert order.status == "fulfilled"
