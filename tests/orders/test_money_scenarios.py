"""The five ways issue 14 showed a paid rouble ending twice or nowhere, each replayed
deterministically against the fake T-Bank and the scripted provider, and ending correctly."""

from __future__ import annotations

import pytest
from django.db.models import Sum
from django.test import TestCase

from fulfillment.models import Delivery, DeliveryStatus, FlagKind, OrderFlag
from fulfillment.providers.base import FulfillmentResult
from fulfillment.services import delivery_resolve_by_reference, fulfill_order
from orders.models import NotificationVerdict, Payment, PaymentNotification, Refund, RefundReason
from orders.refund_state import RefundState
from orders.services.refunds import refund_decide_undelivered, refund_resend, refund_send, refunds_reconcile
from orders.state import OrderStatus
from orders.tbank import client as tbank_client_module
from tests.conftest import notification
from tests.fakes.scripted_provider import WORLD
from tests.fakes.tbank_server import FakePayment, Fault
from tests.orders.test_refunds import status_of, units

pytestmark = pytest.mark.django_db


@pytest.fixture
def scripted(settings):
    """Deliveries through the scripted provider: WORLD.script says what each purchase ends as."""
    settings.FULFILLMENT_PROVIDERS = {
        **settings.FULFILLMENT_PROVIDERS,
        "scripted": "tests.fakes.scripted_provider.ScriptedProvider",
    }
    settings.FULFILLMENT_PROVIDER = "scripted"
    WORLD.reset()
    yield WORLD
    WORLD.reset()


def bank_refunded(bank, order) -> int:
    return bank.payments[order.payment_id].refunded


def books_refunded(order) -> int:
    return Payment.objects.get(payment_id=order.payment_id).refunded_kopecks


def delivered_value(order) -> int:
    kept = Delivery.objects.filter(order=order, status=DeliveryStatus.DELIVERED, refund__isnull=True)
    return kept.aggregate(v=Sum("item__unit_price_kopecks"))["v"] or 0


class WorkerKilled(BaseException):
    """SIGKILL: nothing after this point of the worker runs."""


# --- 4. staff "send again" after a worker was killed mid-Cancel -----------------------------------


def refund_refused_after_a_kill_mid_cancel(shop, bank, monkeypatch):
    """An order whose 70 ₽ refund the bank made while the worker sending it was killed; the next
    run's GetState lagged (nothing refunded yet), so it repeated the Cancel with the same id, and
    the bank refused that repeat for a moment: the refund is FAILED, and it may be at the bank."""
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)  # the refund is decided; its send task is not run (no commit here)
    refund = Refund.objects.get(order=order)
    real_cancel = tbank_client_module.TBankClient.cancel

    def cancel_then_die(self, **kwargs):
        real_cancel(self, **kwargs)  # the bank makes the refund...
        raise WorkerKilled  # ...and the worker dies before reading the answer

    monkeypatch.setattr(tbank_client_module.TBankClient, "cancel", cancel_then_die)
    with pytest.raises(WorkerKilled):
        refund_send(refund_id=refund.pk)
    monkeypatch.setattr(tbank_client_module.TBankClient, "cancel", real_cancel)
    assert bank_refunded(bank, order) == 7000
    Refund.objects.filter(pk=refund.pk).update(claim_expires_at="2000-01-01T00:00:00Z")  # the claim expires
    real_get_state = bank._method_GetState
    lagging = iter([{"Status": "CONFIRMED", "Amount": order.amount_kopecks}])
    monkeypatch.setattr(bank, "_method_GetState", lambda body: {**real_get_state(body), **next(lagging, {})})
    bank.inject("Cancel", Fault("refuse", error_code="9999", message="Внутренняя ошибка, повторите позже"))
    refund_send(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.state == RefundState.FAILED and refund.cancel_may_be_at_bank
    return order, refund


def test_resend_after_a_worker_killed_mid_cancel_keeps_the_external_request_id_and_refunds_once(
    shop, bank, monkeypatch
):
    order, refund = refund_refused_after_a_kill_mid_cancel(shop, bank, monkeypatch)

    resent = refund_resend(refund_id=refund.pk)
    refund_send(refund_id=refund.pk)

    assert resent.external_request_id == refund.external_request_id
    assert {call["ExternalRequestId"] for call in bank.calls("Cancel")} == {refund.external_request_id}
    refund.refresh_from_db()
    assert refund.state == RefundState.SUCCEEDED
    assert bank_refunded(bank, order) == books_refunded(order) == 7000
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED


def test_the_sweep_records_a_refused_refund_the_bank_did_make_without_staff(
    shop, bank, monkeypatch, django_capture_on_commit_callbacks
):
    order, refund = refund_refused_after_a_kill_mid_cancel(shop, bank, monkeypatch)
    cancels = len(bank.calls("Cancel"))

    # The sweep asks about it when its re-check is due (no staff), and GetState now shows it made.
    Refund.objects.filter(pk=refund.pk).update(next_check_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert refunds_reconcile()["refunds"] == 1

    refund.refresh_from_db()
    assert refund.state == RefundState.SUCCEEDED
    assert len(bank.calls("Cancel")) == cancels  # asked about, never sent again
    assert bank_refunded(bank, order) == books_refunded(order) == 7000
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED


def test_a_re_check_that_finds_nothing_made_keeps_the_refund_failed_and_asks_later(
    shop, bank, settings, django_capture_on_commit_callbacks
):
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)
    refund = Refund.objects.get(order=order)
    # A Cancel started, then a refused one: it may be at the bank, but it is not.
    Refund.objects.filter(pk=refund.pk).update(
        state=RefundState.FAILED, cancel_may_be_at_bank=True, cancel_calls=2, cancel_refusals=1, queued_at=None
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert refunds_reconcile()["refunds"] == 1

    refund.refresh_from_db()
    assert refund.state == RefundState.FAILED and refund.cancel_may_be_at_bank
    assert refund.next_check_at is not None and bank.calls("Cancel") == []
    assert refund.attempts.filter(method="GetState", outcome="not_refunded").count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert refunds_reconcile()["refunds"] == 0  # not again before REFUND_FAILED_RECHECK_SECONDS


def test_a_run_that_ends_about_to_cancel_again_leaves_the_refund_to_the_sweep(
    shop, bank, django_capture_on_commit_callbacks
):
    # Found by the soak under load: a check found nothing refunded, the repeated Cancel got no
    # answer, the next check again nothing, and the run's rounds ran out just as it moved to
    # Cancel again. It gave its claim back with the refund SENDING, which the sweep only looked
    # for with an expired claim: stuck for good.
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)
    refund = Refund.objects.get(order=order)
    Refund.objects.filter(pk=refund.pk).update(state=RefundState.CHECKING, cancel_calls=1, queued_at=None)
    bank.inject("Cancel", Fault("http500"))  # check, Cancel unanswered, check: the third round moves to Cancel

    assert refund_send(refund_id=refund.pk) == RefundState.SENDING
    refund.refresh_from_db()
    assert (refund.claim_token, refund.claim_expires_at) == ("", None)

    Refund.objects.filter(pk=refund.pk).update(queued_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert refunds_reconcile()["refunds"] == 1
    refund.refresh_from_db()
    assert refund.state == RefundState.SUCCEEDED
    assert bank_refunded(bank, order) == books_refunded(order) == 7000
    assert {call["ExternalRequestId"] for call in bank.calls("Cancel")} == {refund.external_request_id}


def test_a_refund_every_cancel_of_which_was_refused_is_resent_under_a_new_id(shop, bank, settings):
    settings.TBANK_PASSWORD = "wrong"  # every Cancel refused (204): nothing reached the payment
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)
    refund = Refund.objects.get(order=order)
    refund_send(refund_id=refund.pk)
    refund.refresh_from_db()
    assert refund.state == RefundState.FAILED and not refund.cancel_may_be_at_bank
    settings.TBANK_PASSWORD = bank.password

    resent = refund_resend(refund_id=refund.pk)
    refund_send(refund_id=refund.pk)

    assert resent.external_request_id != refund.external_request_id
    assert bank_refunded(bank, order) == books_refunded(order) == 7000


# --- 1. two refunds of one payment in flight, told apart by amount --------------------------------


def test_two_refunds_of_one_payment_go_to_the_bank_one_at_a_time_and_each_is_settled_by_its_own_evidence(
    shop, bank, scripted
):
    # 3 x 100 RUB: one delivered, one failed (refunded automatically), one of unknown outcome.
    scripted.script[:] = ["delivered", "failed", "failed_unknown"]
    order = shop([(10000, 3, "0811")])
    fulfill_order(order.pk)
    r1 = Refund.objects.get(order=order)
    # R1's Cancel is made by the bank but its answer is lost, and GetState is down: R1 stays checking.
    bank.inject("Cancel", Fault("http500_after"))
    bank.inject("GetState", Fault("http500"))
    assert refund_send(refund_id=r1.pk) == RefundState.CHECKING
    # Staff refund the unknown unit (R2); its Cancel would get HTTP 500 and do nothing.
    r2 = refund_decide_undelivered(order_id=order.pk, decided_by="alice", include_unknown=True)
    bank.inject("Cancel", Fault("http500"))

    # R2 may not go to the bank while R1 may be being made: it waits its turn.
    assert refund_send(refund_id=r2.pk) == RefundState.DECIDED
    assert len(bank.calls("Cancel")) == 1
    # R1's GetState now works: 100 RUB went back, exactly R1.
    assert refund_send(refund_id=r1.pk) == RefundState.SUCCEEDED
    # Then R2 is sent (its first Cancel gets a 500, nothing happens; GetState; sent again, same id).
    assert refund_send(refund_id=r2.pk) == RefundState.SUCCEEDED

    r2_cancels = [c for c in bank.calls("Cancel") if c["ExternalRequestId"] == r2.external_request_id]
    assert len({c["ExternalRequestId"] for c in r2_cancels}) == 1
    assert bank_refunded(bank, order) == books_refunded(order) == 20000
    assert delivered_value(order) + books_refunded(order) == order.amount_kopecks
    assert units(order) == {"0811": DeliveryStatus.DELIVERED} or set(
        Delivery.objects.filter(order=order).values_list("status", flat=True)
    ) == {DeliveryStatus.DELIVERED, DeliveryStatus.REFUNDED}
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED


def test_a_notification_never_settles_a_refund_that_is_not_at_the_bank(shop, bank, scripted, post_notification):
    # 30 RUB decided (its Cancel got nothing done) and 50 RUB made: only the one in flight counts.
    scripted.script[:] = ["delivered", "failed", "failed"]
    order = shop([(10000, 1, "0811"), (5000, 1, "0812"), (3000, 1, "0813")])
    fulfill_order(order.pk)
    assert units(order) == {"0811": "delivered", "0812": "refunding", "0813": "refunding"}, WORLD.states
    refund = Refund.objects.get(order=order)  # the two failed units, 80 RUB, decided
    bank.inject("Cancel", Fault("http500"))
    bank.inject("GetState", Fault("http500"))
    assert refund_send(refund_id=refund.pk) == RefundState.CHECKING
    # A 50 RUB refund made in the portal is notified: it is not our 80, so it is a portal refund...
    bank.payments[order.payment_id].refunded = 5000
    bank.payments[order.payment_id].status = "PARTIAL_REFUNDED"
    post_notification(
        notification(
            order, status="PARTIAL_REFUNDED", amount=order.amount_kopecks - 5000, PaymentId=int(order.payment_id)
        )
    )
    record = PaymentNotification.objects.latest("id")
    assert Refund.objects.get(pk=refund.pk).state == RefundState.CHECKING
    portal = Refund.objects.get(order=order, reason=RefundReason.PORTAL)
    assert portal.amount_kopecks == 5000 and record.verdict != NotificationVerdict.RECORDED
    # ...bound to the 50 RUB unit our refund covers? No: that unit is being refunded by us, so the
    # portal refund matches nothing undelivered and the order waits for staff.
    assert OrderFlag.objects.filter(order=order, kind=FlagKind.PORTAL_REFUND, resolved_at__isnull=True).exists()
    assert books_refunded(order) == bank_refunded(bank, order) == 5000


# --- 3. a late success from the provider for a unit being refunded or refunded --------------------


def late_success(unit: Delivery) -> bool:
    return delivery_resolve_by_reference(
        reference=unit.reference,
        result=FulfillmentResult.delivered(serial="LATE-1", code="00", message="late success"),
        provider_name=unit.provider,
    )


def test_a_late_success_for_a_unit_whose_refund_is_not_sent_withdraws_the_refund(shop, bank, scripted):
    scripted.script[:] = ["delivered", "failed"]
    order = shop([(10000, 2, "0811")])
    fulfill_order(order.pk)  # REFUND_POLICY=auto: the failed unit's refund is decided, not sent yet
    refund = Refund.objects.get(order=order)
    unit = Delivery.objects.get(order=order, status=DeliveryStatus.REFUNDING)

    late_success(unit)

    refund.refresh_from_db()
    assert refund.state == RefundState.WITHDRAWN
    assert refund_send(refund_id=refund.pk) == RefundState.WITHDRAWN
    assert bank.calls("Cancel") == []
    unit.refresh_from_db()
    assert (unit.status, unit.serial, unit.refund_id) == (DeliveryStatus.DELIVERED, "LATE-1", None)
    assert status_of(order) == OrderStatus.FULFILLED
    assert not OrderFlag.objects.filter(order=order).exists()


def test_a_late_success_for_a_refunded_unit_is_recorded_and_flagged_goods_and_money(shop, bank, scripted):
    from fulfillment_site.console.problems import problems_count

    scripted.script[:] = ["delivered", "failed"]
    order = shop([(10000, 2, "0811")])
    fulfill_order(order.pk)
    refund = Refund.objects.get(order=order)
    assert refund_send(refund_id=refund.pk) == RefundState.SUCCEEDED
    unit = Delivery.objects.get(order=order, status=DeliveryStatus.REFUNDED)

    late_success(unit)

    flag = OrderFlag.objects.get(order=order, resolved_at__isnull=True)
    assert flag.kind == FlagKind.GOODS_AND_MONEY and flag.delivery_id == unit.pk and "LATE-1" in flag.reason
    unit.refresh_from_db()
    assert unit.status == DeliveryStatus.REFUNDED and unit.serial == "LATE-1"
    assert unit.attempts.filter(kind="callback", outcome="delivered").exists()
    flagged = [p for p in problems_count() if p.key == "orders_flagged"]
    assert flagged and flagged[0].count == 1  # on the dashboard, and in the staff alert


# --- 2. a partial refund made in the bank's portal stops the units it covers ----------------------


def test_a_portal_partial_refund_of_held_units_stops_them_for_good(shop, bank, scripted, post_notification):
    order = shop([(10000, 1, "0811"), (7000, 2, "0812")])  # nothing sent yet: every unit waits (held)
    bank.payments[order.payment_id].refunded = 14000
    bank.payments[order.payment_id].status = "PARTIAL_REFUNDED"

    post_notification(
        notification(
            order, status="PARTIAL_REFUNDED", amount=order.amount_kopecks - 14000, PaymentId=int(order.payment_id)
        )
    )
    record = PaymentNotification.objects.latest("id")
    assert record.verdict == NotificationVerdict.APPLIED, record.detail
    fulfill_order(order.pk)  # the pause lifts: what is left is delivered

    assert units(order) == {"0811": DeliveryStatus.DELIVERED, "0812": DeliveryStatus.REFUNDED}
    assert Delivery.objects.filter(order=order, status=DeliveryStatus.REFUNDED).count() == 2
    assert len(WORLD.states) == 1  # the refunded units were never bought
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED
    assert Refund.objects.filter(order=order).exclude(reason=RefundReason.PORTAL).count() == 0
    assert delivered_value(order) + books_refunded(order) == order.amount_kopecks == 10000 + bank_refunded(bank, order)


# --- 5. refund receipts follow the shop's receipt settings ---------------------------------------


def test_a_refund_receipt_mirrors_the_sales_receipt_settings(shop, bank, settings):
    settings.TBANK_RECEIPT_PAYMENT_METHOD = "full_payment"
    settings.TBANK_RECEIPT_PAYMENT_OBJECT = "commodity"
    settings.TBANK_RECEIPT_TAX = "vat20"
    settings.TBANK_RECEIPT_TAXATION = "osn"
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)
    refund_send(refund_id=Refund.objects.get(order=order).pk)

    (cancel,) = bank.calls("Cancel")
    assert cancel["Receipt"]["Taxation"] == "osn"
    assert [
        (i["Price"], i["Quantity"], i["PaymentMethod"], i["PaymentObject"], i["Tax"])
        for i in cancel["Receipt"]["Items"]
    ] == [(7000, 1, "full_payment", "commodity", "vat20")]


def test_no_refund_receipt_when_receipts_are_disabled(shop, bank, settings):
    settings.TBANK_RECEIPT_ENABLED = False
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    bank.payments[order.payment_id].receipt = None  # the sale had none either
    fulfill_order(order.pk)
    refund_send(refund_id=Refund.objects.get(order=order).pk)

    (cancel,) = bank.calls("Cancel")
    assert cancel["Amount"] == 7000 and "Receipt" not in cancel
    assert bank_refunded(bank, order) == books_refunded(order) == 7000


# --- 7. what the customer sees ------------------------------------------------------------------


def test_a_unit_shows_refunding_until_the_bank_made_the_refund_and_a_refused_refund_is_never_shown_done(
    shop, bank, client
):
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)
    refund = Refund.objects.get(order=order)
    url = f"/api/orders/{order.public_id}?token={order.access_token}"

    def unit_statuses() -> list[str]:
        body = client.get(url).json()
        return sorted(unit["status"] for item in body["items"] for unit in item["units"]), body["refunded_amount"]

    assert unit_statuses() == (["delivered", "refunding"], 0)
    bank.inject("Cancel", Fault("refuse", error_code="309", message="Чек не должен быть пустым"))
    assert refund_send(refund_id=refund.pk) == RefundState.FAILED
    assert unit_statuses() == (["delivered", "refunding"], 0)  # being handled, never "refunded"
    refund_resend(refund_id=refund.pk)
    assert refund_send(refund_id=refund.pk) == RefundState.SUCCEEDED
    assert unit_statuses() == (["delivered", "refunded"], 7000)


# --- also found: a NEW order whose CONFIRMED was lost, then partly refunded in the portal ---------


def lost_confirmed_then_portal_refund(order_factory, bank, refunded: int):
    order = order_factory(quantities=(1, 2), price=10000)
    Payment.objects.create(order=order, payment_id="7300000001", amount_kopecks=order.amount_kopecks)
    bank.payments["7300000001"] = FakePayment(
        "7300000001", order.public_id, order.amount_kopecks, status="PARTIAL_REFUNDED", refunded=refunded
    )
    return order


def test_a_new_order_partly_refunded_in_the_portal_after_a_lost_confirmed_is_paid_and_the_refund_bound(
    order_factory, bank, post_notification
):
    order = lost_confirmed_then_portal_refund(order_factory, bank, refunded=10000)

    post_notification(notification(order, status="PARTIAL_REFUNDED", amount=20000, PaymentId=7300000001))

    record = PaymentNotification.objects.latest("id")
    assert record.verdict == NotificationVerdict.APPLIED, record.detail
    assert Payment.objects.get(payment_id="7300000001").captured_at is not None
    statuses = sorted(Delivery.objects.filter(order=order).values_list("status", flat=True))
    assert statuses == [DeliveryStatus.REFUNDED, DeliveryStatus.WAITING, DeliveryStatus.WAITING]
    assert status_of(order) == OrderStatus.PAID
    assert Payment.objects.get(payment_id="7300000001").refunded_kopecks == 10000


def test_a_cancelled_order_whose_payment_was_partly_refunded_is_paid_and_the_refund_bound(
    order_factory, bank, post_notification
):
    # Found by the money model on PostgreSQL: the order was cancelled (an earlier attempt declined),
    # its payment captured, then partly refunded in the portal, and the CONFIRMED came last. The
    # refund was taken for an extra payment's, the CONFIRMED paid the order, and every unit was
    # delivered: the goods and the money both given, with no flag.
    order = lost_confirmed_then_portal_refund(order_factory, bank, refunded=10000)
    post_notification(notification(order, status="REJECTED", PaymentId=7300000000, Success=False))
    assert status_of(order) == OrderStatus.CANCELLED

    post_notification(notification(order, status="PARTIAL_REFUNDED", amount=20000, PaymentId=7300000001))
    post_notification(notification(order, status="CONFIRMED", PaymentId=7300000001))

    assert status_of(order) == OrderStatus.PAID
    statuses = sorted(Delivery.objects.filter(order=order).values_list("status", flat=True))
    assert statuses == [DeliveryStatus.REFUNDED, DeliveryStatus.WAITING, DeliveryStatus.WAITING]
    payment = Payment.objects.get(payment_id="7300000001")
    assert payment.refunded_kopecks == 10000 and payment.captured_at is not None
    assert not Refund.objects.filter(order=order).exclude(payment=payment).exists()


def test_a_stale_partial_refund_after_the_whole_payment_came_back_pays_nothing(order_factory, bank, post_notification):
    # Found by the soak after the fix above: REFUNDED (the whole payment) reached the cancelled
    # order first, then the older PARTIAL_REFUNDED; paying the order for it delivered goods whose
    # money was already back.
    order = lost_confirmed_then_portal_refund(order_factory, bank, refunded=30000)  # all of its 300 ₽
    post_notification(notification(order, status="REJECTED", PaymentId=7300000000, Success=False))
    post_notification(notification(order, status="REFUNDED", amount=0, PaymentId=7300000001))

    post_notification(notification(order, status="PARTIAL_REFUNDED", amount=20000, PaymentId=7300000001))

    assert PaymentNotification.objects.latest("id").verdict == NotificationVerdict.DUPLICATE
    assert status_of(order) == OrderStatus.CANCELLED
    assert not Delivery.objects.filter(order=order).exists()  # never paid, so nothing to deliver


def test_polling_pays_a_new_order_whose_payment_the_bank_shows_partly_refunded(order_factory, bank, settings):
    from orders.services.polling import payments_poll

    settings.PAYMENT_POLL_AFTER_SECONDS = 0
    order = lost_confirmed_then_portal_refund(order_factory, bank, refunded=10000)

    with TestCase.captureOnCommitCallbacks(execute=False):
        report = payments_poll()

    assert report.applied == ["7300000001"]
    assert status_of(order) == OrderStatus.PAID
    assert Delivery.objects.filter(order=order, status=DeliveryStatus.REFUNDED).count() == 1


# --- found by the money model ---------------------------------------------------------------------


def test_a_refunded_notification_repeated_before_a_late_confirmed_is_recorded_once(order_factory, post_notification):
    # Found by `make soak-money`: REFUNDED twice, then CONFIRMED, booked 400 RUB of a 200 RUB payment.
    order = order_factory(quantities=(2,), price=10000)
    Payment.objects.create(order=order, payment_id="7300000001", amount_kopecks=order.amount_kopecks)
    for status in ("REFUNDED", "REFUNDED", "CONFIRMED", "CONFIRMED"):
        amount = 0 if status == "REFUNDED" else None
        post_notification(notification(order, status=status, amount=amount, PaymentId=7300000001))

    payment = Payment.objects.get(payment_id="7300000001")
    assert payment.refunded_kopecks == payment.amount_kopecks == 20000
    assert payment.refunds.aggregate(t=Sum("amount_kopecks"))["t"] == 20000
    assert status_of(order) == OrderStatus.REFUNDED
    assert set(Delivery.objects.filter(order=order).values_list("status", flat=True)) == {DeliveryStatus.CANCELLED}
