"""The bank's REFUNDED / PARTIAL_REFUNDED notifications: ours recognised (duplicated, out of order,
before or after our Cancel's answer), refunds made in the portal matched to the right payment,
and the books of every order in a final status adding up (amount = delivered + refunded)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Sum

from fulfillment.models import Delivery, DeliveryStatus, FlagKind, OrderFlag
from fulfillment.services import fulfill_order
from orders.models import NotificationVerdict, Order, Payment, PaymentNotification, Refund, RefundReason
from orders.refund_state import RefundState, refund_transition
from orders.services.refunds import (
    order_refunded_kopecks,
    refund_decide_undelivered,
    refund_mark_succeeded,
    refund_send,
)
from orders.state import FINAL_STATUSES, OrderStatus
from tests.conftest import notification
from tests.orders.test_refunds import run, status_of, units

pytestmark = pytest.mark.django_db


def post(post_notification, order: Order, status: str, *, payment_id: str | None = None, amount: int | None = None):
    response = post_notification(
        notification(order, status=status, PaymentId=int(payment_id or order.payment_id), amount=amount)
    )
    assert response.status_code == 200, response.content
    return PaymentNotification.objects.latest("id")


def staff_failed_order(shop, settings, lines):
    settings.REFUND_POLICY = "staff"
    order = shop(lines)
    fulfill_order(order.pk)
    settings.REFUND_POLICY = "auto"
    return order


def in_flight(order: Order, recipients: list[str], amount: int) -> Refund:
    """A refund of ours already sent to the bank (SENDING), covering the units of `recipients`."""
    payment, _ = Payment.objects.get_or_create(
        payment_id=order.payment_id, defaults={"order": order, "amount_kopecks": order.amount_kopecks}
    )
    refund = Refund.objects.create(
        order=order, payment=payment, amount_kopecks=amount, reason=RefundReason.UNDELIVERABLE, decided_by="test"
    )
    Delivery.objects.filter(order=order, item__recipient__in=recipients).update(
        status=DeliveryStatus.REFUNDING, refund=refund
    )
    refund_transition(refund_id=refund.pk, target=RefundState.SENDING)
    return refund


# --- ours -------------------------------------------------------------------------------------


def test_our_refund_notification_after_our_answer_is_recorded_once_however_often_it_comes(
    shop, bank, post_notification, django_capture_on_commit_callbacks
):
    order = shop([(10000, 2, "0811"), (7000, 1, "FAIL-1")])
    run(order, django_capture_on_commit_callbacks)
    refund = Refund.objects.get(order=order)
    assert refund.state == RefundState.SUCCEEDED

    records = [post(post_notification, order, "PARTIAL_REFUNDED", amount=20000) for _ in range(2)]

    assert [r.verdict for r in records] == [NotificationVerdict.DUPLICATE] * 2
    assert all(f"our refund {refund.pk}" in r.detail for r in records)
    assert Payment.objects.get(payment_id=order.payment_id).refunded_kopecks == 7000
    assert Refund.objects.filter(order=order).count() == 1
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED


def test_our_refund_notification_before_our_answer_settles_it_and_the_answer_changes_nothing(
    shop, bank, settings, post_notification
):
    order = staff_failed_order(shop, settings, [(10000, 2, "0811"), (7000, 1, "FAIL-1")])
    refund = in_flight(order, ["FAIL-1"], 7000)

    record = post(post_notification, order, "PARTIAL_REFUNDED", amount=20000)

    assert record.verdict == NotificationVerdict.RECORDED
    assert f"our refund {refund.pk}" in record.detail
    refund.refresh_from_db()
    assert refund.state == RefundState.SUCCEEDED
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED
    # Our Cancel's answer arrives afterwards: already settled, nothing counted twice.
    assert refund_mark_succeeded(refund_id=refund.pk, bank_status="PARTIAL_REFUNDED") is False
    assert Payment.objects.get(payment_id=order.payment_id).refunded_kopecks == 7000
    assert list(refund.attempts.values_list("method", flat=True)) == ["Notification"]


def test_a_second_refund_of_a_payment_waits_and_a_notification_settles_only_the_one_in_flight(
    shop, bank, settings, post_notification
):
    order = staff_failed_order(shop, settings, [(10000, 1, "0811"), (7000, 1, "FAIL-1"), (3000, 1, "FAIL-2")])
    first = in_flight(order, ["FAIL-1"], 7000)
    second = Refund.objects.create(
        order=order, payment=first.payment, amount_kopecks=3000, reason=RefundReason.STAFF, decided_by="test"
    )
    # The database refuses a second refund of one payment at the bank at once.
    with pytest.raises(IntegrityError), transaction.atomic():
        refund_transition(refund_id=second.pk, target=RefundState.SENDING)

    record = post(post_notification, order, "PARTIAL_REFUNDED", amount=13000)  # 7000 returned
    again = post(post_notification, order, "PARTIAL_REFUNDED", amount=13000)

    assert record.verdict == NotificationVerdict.RECORDED and f"our refund {first.pk}" in record.detail
    assert again.verdict == NotificationVerdict.DUPLICATE
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == (RefundState.SUCCEEDED, RefundState.DECIDED)
    assert Payment.objects.get(payment_id=order.payment_id).refunded_kopecks == 7000


def test_our_full_refund_notification_does_not_look_like_a_portal_refund(shop, bank, settings, post_notification):
    order = staff_failed_order(shop, settings, [(9000, 2, "FAIL-1")])
    refund = in_flight(order, ["FAIL-1"], 18000)

    record = post(post_notification, order, "REFUNDED", amount=0)

    assert record.verdict == NotificationVerdict.RECORDED and f"our refund {refund.pk}" in record.detail
    assert Refund.objects.filter(order=order).count() == 1
    assert status_of(order) == OrderStatus.REFUNDED
    assert post(post_notification, order, "REFUNDED", amount=0).verdict == NotificationVerdict.DUPLICATE


# --- made in the portal ---------------------------------------------------------------------------


def test_a_partial_portal_refund_is_bound_to_undelivered_units_whose_prices_add_up(
    shop, bank, settings, post_notification
):
    order = staff_failed_order(shop, settings, [(10000, 1, "0811"), (7000, 1, "FAIL-1")])

    record = post(post_notification, order, "PARTIAL_REFUNDED", amount=10000)  # 7000 returned

    assert record.verdict == NotificationVerdict.APPLIED and "for FAIL-1" in record.detail
    portal = Refund.objects.get(order=order)
    assert (portal.reason, portal.state, portal.amount_kopecks) == (RefundReason.PORTAL, RefundState.SUCCEEDED, 7000)
    assert units(order) == {"0811": DeliveryStatus.DELIVERED, "FAIL-1": DeliveryStatus.REFUNDED}
    assert Delivery.objects.get(order=order, item__recipient="FAIL-1").refund == portal
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED


def test_a_partial_portal_refund_of_delivered_goods_flags_the_order_and_names_the_units_it_could_cover(
    shop, bank, settings, post_notification
):
    order = staff_failed_order(shop, settings, [(10000, 1, "0811"), (7000, 1, "FAIL-1")])

    record = post(post_notification, order, "PARTIAL_REFUNDED", amount=7000)  # 10000 returned: the delivered unit

    assert record.verdict == NotificationVerdict.NEEDS_REVIEW
    assert "100.00 RUB" in record.detail and "1 x" in record.detail and "for 0811" in record.detail
    flag = OrderFlag.objects.get(order=order, resolved_at__isnull=True)
    assert flag.kind == FlagKind.PORTAL_REFUND and "for 0811" in flag.reason
    assert units(order) == {"0811": DeliveryStatus.DELIVERED, "FAIL-1": DeliveryStatus.FAILED}
    assert status_of(order) == OrderStatus.PAID
    # Nothing automatic happens to the order until staff decide.
    settings.REFUND_POLICY = "auto"
    assert refund_decide_undelivered is not None
    from orders.services.refunds import order_settle_undelivered

    order_settle_undelivered(order_id=order.pk)
    assert Refund.objects.filter(order=order).exclude(reason=RefundReason.PORTAL).count() == 0


def test_double_payment_is_refunded_once_and_the_order_keeps_its_first_payment(
    shop, bank, post_notification, django_capture_on_commit_callbacks
):
    from tests.fakes.tbank_server import FakePayment

    order = shop([(10000, 1, "0811")])
    bank.payments["7199999999"] = FakePayment("7199999999", order.public_id, order.amount_kopecks, status="CONFIRMED")

    with django_capture_on_commit_callbacks(execute=True):
        first = post(post_notification, order, "CONFIRMED", payment_id="7199999999")
    second = post(post_notification, order, "CONFIRMED", payment_id="7199999999")

    assert first.verdict == NotificationVerdict.APPLIED and second.verdict == NotificationVerdict.DUPLICATE
    refund = Refund.objects.get(reason=RefundReason.DOUBLE_PAYMENT)
    assert refund.state == RefundState.SUCCEEDED and refund.payment.payment_id == "7199999999"
    (cancel,) = bank.calls("Cancel")
    assert cancel["PaymentId"] == "7199999999" and "Amount" not in cancel
    assert Order.objects.get(pk=order.pk).payment_id == order.payment_id
    assert status_of(order) == OrderStatus.PAID
    assert order_refunded_kopecks(order_id=order.pk) == 0  # not the order's own purchase
    # The bank's REFUNDED for the extra payment comes back: ours, and the goods are untouched.
    record = post(post_notification, order, "REFUNDED", payment_id="7199999999", amount=0)
    assert record.verdict == NotificationVerdict.DUPLICATE and f"our refund {refund.pk}" in record.detail
    assert units(order) == {"0811": DeliveryStatus.WAITING}


def test_a_portal_refund_of_the_extra_payment_never_touches_the_orders_deliveries(shop, bank, post_notification):
    order = shop([(10000, 2, "0811")])
    post(post_notification, order, "CONFIRMED", payment_id="7199999998")  # refund decided, not sent yet

    record = post(post_notification, order, "REFUNDED", payment_id="7199999998", amount=0)

    assert record.verdict == NotificationVerdict.RECORDED
    assert "extra payment 7199999998" in record.detail and "deliveries are untouched" in record.detail
    assert status_of(order) == OrderStatus.PAID
    assert set(units(order).values()) == {DeliveryStatus.WAITING}
    extra = Payment.objects.get(payment_id="7199999998")
    assert extra.refunded_kopecks == extra.amount_kopecks
    assert order_refunded_kopecks(order_id=order.pk) == 0


def test_a_portal_refund_of_the_first_payment_refunds_the_order(shop, bank, post_notification):
    order = shop([(10000, 1, "0811")])
    post(post_notification, order, "CONFIRMED", payment_id="7199999997")

    record = post(post_notification, order, "REFUNDED", amount=0)

    assert record.verdict == NotificationVerdict.APPLIED
    assert status_of(order) == OrderStatus.REFUNDED
    assert units(order) == {"0811": DeliveryStatus.CANCELLED}
    assert order_refunded_kopecks(order_id=order.pk) == order.amount_kopecks


# --- the books --------------------------------------------------------------------------------


def test_every_order_in_a_final_status_ends_delivered_plus_refunded_equal_to_its_amount(
    shop, bank, settings, post_notification, django_capture_on_commit_callbacks
):
    # Every way an order ends: all delivered; some refunded by us; all refunded by us; refunded in
    # the portal after part was delivered; refunded by us, then the rest in the portal.
    run(shop([(10000, 2, "0811")]), django_capture_on_commit_callbacks)
    run(shop([(10000, 2, "0811"), (7000, 1, "FAIL-1")]), django_capture_on_commit_callbacks)
    run(shop([(4000, 3, "FAIL-2")]), django_capture_on_commit_callbacks)
    portal_after_delivery = staff_failed_order(shop, settings, [(10000, 1, "0811"), (7000, 1, "FAIL-3")])
    post(post_notification, portal_after_delivery, "REFUNDED", amount=0)
    ours_then_portal = shop([(10000, 1, "0811"), (7000, 1, "FAIL-4")])
    run(ours_then_portal, django_capture_on_commit_callbacks)
    post(post_notification, ours_then_portal, "REFUNDED", amount=0)

    final = Order.objects.filter(status__in=FINAL_STATUSES)
    assert final.count() == 5
    assert set(final.values_list("status", flat=True)) == set(FINAL_STATUSES)
    for order in final:
        kept = Delivery.objects.filter(order=order, status=DeliveryStatus.DELIVERED, refund__isnull=True)
        delivered = kept.aggregate(v=Sum("item__unit_price_kopecks"))["v"] or 0
        refunded = order_refunded_kopecks(order_id=order.pk)
        assert order.amount_kopecks == delivered + refunded, (order.pk, order.status, delivered, refunded)
        # Each unit is in exactly one place: kept as delivered, or covered by a refund that succeeded.
        units_qs = Delivery.objects.filter(order=order)
        covered = units_qs.filter(refund__state=RefundState.SUCCEEDED)
        assert kept.count() + covered.count() == units_qs.count()
        assert (covered.aggregate(v=Sum("item__unit_price_kopecks"))["v"] or 0) == refunded
        assert not Refund.objects.filter(order=order).exclude(state=RefundState.SUCCEEDED).exists()
    assert not PaymentNotification.objects.filter(verdict=NotificationVerdict.NEEDS_REVIEW).exists()


def test_staff_decision_requires_a_paid_order(shop, bank, settings, post_notification):
    from orders.services.refunds import RefundNotPossible

    order = staff_failed_order(shop, settings, [(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    post(post_notification, order, "REFUNDED", amount=0)
    with pytest.raises(RefundNotPossible, match="is refunded"):
        refund_decide_undelivered(order_id=order.pk, decided_by="alice")


def test_a_full_portal_refund_withdraws_our_refund_not_sent_yet(
    shop, bank, settings, post_notification, django_capture_on_commit_callbacks
):
    order = staff_failed_order(shop, settings, [(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    decided = refund_decide_undelivered(order_id=order.pk, decided_by="anna")  # queued, not sent yet
    assert decided.state == RefundState.DECIDED

    with django_capture_on_commit_callbacks(execute=True):
        record = post(post_notification, order, "REFUNDED", amount=0)  # the whole 170 ₽, in the portal

    decided.refresh_from_db()
    portal = Refund.objects.get(order=order, reason=RefundReason.PORTAL)
    assert decided.state == RefundState.WITHDRAWN and f"refund {portal.pk}" in decided.last_message
    assert record.verdict == NotificationVerdict.APPLIED and status_of(order) == OrderStatus.REFUNDED
    # The failed unit is refunded by the portal's refund; nothing of ours reaches the bank.
    failed = Delivery.objects.get(order=order, item__recipient="FAIL-1")
    assert (failed.status, failed.refund_id) == (DeliveryStatus.REFUNDED, portal.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert refund_send(refund_id=decided.pk) == RefundState.WITHDRAWN
    assert bank.calls("Cancel") == []
    assert order_refunded_kopecks(order_id=order.pk) == order.amount_kopecks
