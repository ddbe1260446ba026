"""The order page: what is wrong first, money in roubles, one units table, one timeline in time
order; the Retry button (permission, confirmation, outcome, admin history); notifications that
link to their order, stand out when rejected, and can be marked reviewed."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import constants
from django.urls import reverse

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.services import fulfill_order, provider_halt
from orders.models import NotificationVerdict, Order, PaymentNotification
from orders.state import OrderStatus
from tests.conftest import notification

VIEW = "orders.view_order"
RETRY = "orders.retry_fulfillment"


def page_of(client, order) -> str:
    response = client.get(reverse("admin:orders_order_change", args=[order.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_says_what_is_wrong_then_shows_units_and_money(admin_client, failed_order):
    page = page_of(admin_client, failed_order)

    assert "Paid — 1 unit failed" in page
    wrong = page.index('id="order-wrong"')
    assert wrong < page.index('id="order-units"') < page.index('id="order-timeline"')
    assert "Wrong number." in page[wrong : page.index('id="order-units"')]
    assert "800.00 ₽" in page and ">80000<" not in page
    units = page[page.index('id="order-units"') : page.index('id="order-timeline"')]
    for text in ("Product", "087800001232", "VOUCHER-1111", "Delivered", "Failed (needs staff)"):
        assert text in units


def test_a_fulfilled_order_has_nothing_wrong(admin_client, paid_order_factory, scripted_provider):
    order = paid_order_factory(quantities=(2,))
    fulfill_order(order.pk)
    page = page_of(admin_client, order)
    assert 'id="order-wrong"' not in page
    assert "Nothing is wrong: every unit is delivered." in page


def test_a_halt_is_said_on_the_page_of_an_order_waiting_for_it(admin_client, paid_order_factory):
    order = paid_order_factory()
    provider_halt(provider="digiflazz", code="41", reason="IP not allow-listed.")
    assert "Deliveries through digiflazz are halted: IP not allow-listed." in page_of(admin_client, order)


def test_the_timeline_tells_everything_in_time_order_with_seconds(
    admin_client, order_factory, post_notification, scripted_provider, django_capture_on_commit_callbacks
):
    from fulfillment.providers.base import FailureScope, FulfillmentResult

    order = order_factory(quantities=(1,))
    sku = order.items.get().product.sku
    scripted_provider.script(sku, FulfillmentResult.failed(scope=FailureScope.RETRYABLE, code="busy", message="later"))
    post_notification(notification(order, PaymentId=4242))
    fulfill_order(order.pk)
    with django_capture_on_commit_callbacks(execute=True):  # eager Celery: the retry delivers
        admin_client.post(reverse("admin:orders_order_retry", args=[order.pk]))

    page = page_of(admin_client, order)
    timeline = page[page.index('id="order-timeline"') :]
    steps = [
        "created: 100.00 ₽",
        "CONFIRMED: Applied",
        "failed [busy]",
        "Retried fulfillment",
        ": delivered",
        "Fulfilled: every unit delivered",
    ]
    positions = [timeline.index(step) for step in steps]
    assert positions == sorted(positions)
    stored = Order.objects.get(pk=order.pk)
    from django.utils import timezone

    # Local time (TIME_ZONE: Moscow) with seconds, and the zone said.
    assert timezone.localtime(stored.created_at).strftime("%Y-%m-%d %H:%M:%S MSK") in timeline


def test_the_timeline_of_a_long_order_shows_the_latest_attempts_and_links_to_all(admin_client, paid_order_factory):
    from django.utils import timezone

    from fulfillment.models import DeliveryAttempt
    from fulfillment_site.console import timeline

    order = paid_order_factory()
    unit = Delivery.objects.get(order=order)
    now = timezone.now()
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            delivery=unit,
            order=order,
            provider="mock",
            reference=unit.reference,
            kind="check",
            outcome="pending",
            started_at=now,
            finished_at=now,
            message=f"check {n}",
        )
        for n in range(timeline.ATTEMPTS_SHOWN + 5)
    )
    page = page_of(admin_client, order)
    assert f"check {timeline.ATTEMPTS_SHOWN + 4}" in page
    assert "check 4 (" not in page and "check 5 (" in page
    assert f"all {timeline.ATTEMPTS_SHOWN + 5} attempts" in page


@pytest.mark.parametrize("perms", [(VIEW,), (VIEW, "orders.change_order")])
def test_no_retry_button_without_the_permission(staff_client_factory, failed_order, queued_deliveries, perms):
    client = staff_client_factory(*perms)
    assert 'id="retry-button"' not in page_of(client, failed_order)
    url = reverse("admin:orders_order_retry", args=[failed_order.pk])
    assert client.get(url).status_code == 403
    assert client.post(url).status_code == 403
    assert Delivery.objects.filter(order=failed_order, status=DeliveryStatus.FAILED).count() == 1
    assert queued_deliveries == []


def test_no_retry_button_on_an_order_that_is_not_paid(staff_client_factory, order_factory):
    assert 'id="retry-button"' not in page_of(staff_client_factory(VIEW, RETRY), order_factory())


def test_retry_asks_first_then_queues_records_and_reports(
    staff_client_factory, failed_order, queued_deliveries, django_capture_on_commit_callbacks
):
    client = staff_client_factory(VIEW, RETRY)
    assert 'id="retry-button"' in page_of(client, failed_order)
    url = reverse("admin:orders_order_retry", args=[failed_order.pk])

    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "1 failed unit will be bought again under a new reference" in confirm.content.decode()
    assert Delivery.objects.filter(order=failed_order, status=DeliveryStatus.FAILED).count() == 1  # GET changes nothing

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:orders_order_change", args=[failed_order.pk])
    messages = [(message.level, message.message) for message in response.context["messages"]]
    assert (
        constants.SUCCESS,
        f"Order {failed_order.public_id}: Retry queued: failed units get a new purchase, waiting ones are sent now.",
    ) in messages
    assert queued_deliveries == [failed_order.pk]
    assert (
        Delivery.objects.get(order=failed_order, unit_index=0, item__in=failed_order.items.all()[1:]).status
        == DeliveryStatus.WAITING
    )
    entry = LogEntry.objects.get(object_id=str(failed_order.pk))
    assert entry.user.username.startswith("staff") and entry.action_time is not None
    assert entry.get_change_message().startswith("Retried fulfillment. Retry queued")
    assert "Retried fulfillment" in response.content.decode()  # in the timeline, with who and when


def test_retry_of_an_order_no_longer_paid_says_why_and_changes_nothing(staff_client_factory, failed_order):
    from orders.services import order_refund

    order_refund(order_id=failed_order.pk)
    client = staff_client_factory(VIEW, RETRY)
    response = client.post(reverse("admin:orders_order_retry", args=[failed_order.pk]), follow=True)
    (message,) = [message for message in response.context["messages"]]
    assert message.level == constants.ERROR
    assert f"Order {failed_order.pk} is refunded, not paid" in message.message
    assert Order.objects.get(pk=failed_order.pk).status == OrderStatus.REFUNDED


def test_the_list_action_is_recorded_in_the_admin_history(staff_client_factory, failed_order, queued_deliveries):
    client = staff_client_factory(VIEW, RETRY)
    client.post(
        reverse("admin:orders_order_changelist"),
        {"action": "retry_fulfillment", "_selected_action": [failed_order.pk], "index": 0},
    )
    entry = LogEntry.objects.get(object_id=str(failed_order.pk))
    assert entry.get_change_message() == "Retried fulfillment (list action): queued."


def test_the_page_has_one_save_for_its_one_editable_field(admin_client, failed_order):
    page = page_of(admin_client, failed_order)
    assert 'name="customer_email"' in page
    assert 'name="_continue"' not in page and 'name="_addanother"' not in page


def test_read_only_pages_have_no_save_button(admin_client, failed_order):
    from fulfillment.models import ProviderHalt

    provider_halt(provider="mock", code="41", reason="Bad key.")
    record = PaymentNotification.objects.create(order=failed_order, verdict="applied", http_status=200)
    unit = Delivery.objects.filter(order=failed_order).first()
    for url in (
        reverse("admin:orders_paymentnotification_change", args=[record.pk]),
        reverse("admin:fulfillment_delivery_change", args=[unit.pk]),
        reverse("admin:fulfillment_providerhalt_change", args=[ProviderHalt.objects.get().pk]),
    ):
        page = admin_client.get(url).content.decode()
        assert 'name="_save"' not in page, url


# --- notifications ----------------------------------------------------------------------------


def test_notifications_link_to_their_order_and_rejected_ones_stand_out(admin_client, order_factory, post_notification):
    order = order_factory()
    post_notification(notification(order, PaymentId=7))
    post_notification(notification(order, Amount=1))  # amount mismatch: answered 409
    post_notification({**notification(order), "Token": "forged"})

    response = admin_client.get(reverse("admin:orders_paymentnotification_changelist"))
    page = response.content.decode()
    url = reverse("admin:orders_order_change", args=[order.pk])
    assert f'<a class="mono" href="{url}">{order.public_id}</a>' in page
    assert page.count('class="badge bad">Rejected:') == 2
    assert page.count('class="badge ok">') == 1

    rejected = admin_client.get(reverse("admin:orders_paymentnotification_changelist"), {"answer": "rejected"})
    assert {record.verdict for record in rejected.context["cl"].result_list} == {"amount_mismatch", "forbidden"}


def test_marking_a_notification_reviewed_needs_the_permission_and_is_recorded(
    staff_client_factory, order_factory, post_notification
):
    order = order_factory()
    post_notification(notification(order, Status="PARTIAL_REFUNDED"))
    record = PaymentNotification.objects.get(verdict=NotificationVerdict.NEEDS_REVIEW)
    url = reverse("admin:orders_paymentnotification_change", args=[record.pk])
    review = reverse("admin:orders_paymentnotification_review", args=[record.pk])

    viewer = staff_client_factory("orders.view_paymentnotification")
    assert 'id="review-button"' not in viewer.get(url).content.decode()
    assert viewer.post(review).status_code == 403

    reviewer = staff_client_factory("orders.view_paymentnotification", "orders.review_paymentnotification")
    assert 'id="review-button"' in reviewer.get(url).content.decode()
    response = reviewer.post(review, follow=True)
    assert "marked reviewed" in response.content.decode()
    record.refresh_from_db()
    assert record.reviewed_at is not None and record.reviewed_by.username.startswith("staff")
    assert LogEntry.objects.filter(object_id=str(order.pk), change_message__contains="reviewed").exists()

    again = reviewer.post(review, follow=True)
    assert "was already reviewed by" in again.content.decode()


def test_a_unit_page_lists_its_latest_provider_calls_and_links_to_the_rest(admin_client, paid_order_factory):
    from django.utils import timezone

    from fulfillment.admin import UNIT_ATTEMPTS_SHOWN
    from fulfillment.models import DeliveryAttempt

    order = paid_order_factory()
    unit = Delivery.objects.get(order=order)
    url = reverse("admin:fulfillment_delivery_change", args=[unit.pk])
    assert "None yet." in admin_client.get(url).content.decode()

    now = timezone.now()
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            delivery=unit,
            order=order,
            provider="mock",
            reference=unit.reference,
            kind="check",
            outcome="pending",
            started_at=now,
            finished_at=now,
            message=f"check {n}",
        )
        for n in range(UNIT_ATTEMPTS_SHOWN + 3)
    )
    page = admin_client.get(url).content.decode()
    assert f"check {UNIT_ATTEMPTS_SHOWN + 2}<" in page and "check 2<" not in page and "check 3<" in page
    assert "every attempt of this order" in page


def test_the_timeline_shows_refunds_with_their_bank_calls_and_customer_emails(admin_client, paid_order_factory):
    from django.utils import timezone

    from orders.models import CustomerEmail, EmailState, Payment, Refund, RefundAttempt, RefundReason
    from orders.refund_state import RefundState

    order = paid_order_factory(quantities=(2,), price=40000)
    payment = Payment.objects.create(order=order, payment_id="8742591", amount_kopecks=80000)
    now = timezone.now()
    refund = Refund.objects.create(
        order=order,
        payment=payment,
        amount_kopecks=40000,
        reason=RefundReason.UNDELIVERABLE,
        decided_by="system: undeliverable units",
        state=RefundState.SUCCEEDED,
        settled_at=now,
    )
    RefundAttempt.objects.create(
        refund=refund, method="Cancel", outcome="succeeded", started_at=now, finished_at=now, duration_ms=12
    )
    CustomerEmail.objects.create(
        order=order, kind="refund", event=f"refund-{refund.pk}", to="c@example.com", state=EmailState.SENT, sent_at=now
    )

    page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()

    assert f"Refund {refund.pk} of 400.00" in page and "decided" in page
    assert f"Refund {refund.pk}: Cancel succeeded" in page
    assert f"Refund {refund.pk} of 400.00 ₽ made" in page
    assert "Refund email sent to c@example.com" in page
