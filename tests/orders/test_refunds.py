"""Refunds through T-Bank Cancel, against the fake bank over real HTTP: the Cancel request and its
Token, the receipt of a partial refund, ExternalRequestId repeats, unknown outcomes settled by
GetState, each REFUND_POLICY, refund-vs-retry races, and where the order ends."""

from __future__ import annotations

import pytest
from django.db.models import Sum

from fulfillment.models import Delivery, DeliveryStatus, ProviderHalt
from fulfillment.providers.base import UNKNOWN_OUTCOME_CODE
from fulfillment.services import fulfill_order, order_fulfillment_reset_for_retry, paid_orders_reconcile
from orders import signals
from orders.models import Order, Payment, Refund, RefundAttempt, RefundReason
from orders.refund_emails import refund_email_build
from orders.refund_state import RefundState, refund_transition
from orders.services import refunds as refund_services
from orders.services.refunds import (
    RefundNotPossible,
    order_refunded_kopecks,
    refund_decide_undelivered,
    refund_send,
    refunds_reconcile,
    unit_customer_status,
)
from orders.state import OrderStatus
from tests.fakes.tbank_server import Fault

pytestmark = pytest.mark.django_db


def run(order: Order, capture) -> None:
    """Deliver what is due, then run what commits queued (the refund's send task, eagerly)."""
    with capture(execute=True):
        fulfill_order(order.pk)


def status_of(order: Order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


def units(order: Order) -> dict[str, str]:
    return dict(Delivery.objects.filter(order=order).values_list("item__recipient", "status"))


# --- the Cancel request ------------------------------------------------------------------------


def test_partial_refund_sends_one_signed_cancel_with_a_receipt_of_only_the_refunded_units(
    shop, bank, django_capture_on_commit_callbacks
):
    order = shop([(10000, 2, "0811"), (7000, 1, "FAIL-1")])

    run(order, django_capture_on_commit_callbacks)

    (cancel,) = bank.calls("Cancel")
    refund = Refund.objects.get(order=order)
    # The fake checks the Token with the terminal password and refuses (204) a wrong one.
    assert cancel["Token"] == "***" and cancel["TerminalKey"] == bank.terminal_key
    assert cancel["PaymentId"] == order.payment_id
    assert cancel["Amount"] == 7000
    assert cancel["ExternalRequestId"] == refund.external_request_id
    items = cancel["Receipt"]["Items"]
    assert [(i["Price"], i["Quantity"], i["Amount"]) for i in items] == [(7000, 1, 7000)]
    assert cancel["Receipt"]["Email"] == "buyer@example.com"
    assert bank.payments[order.payment_id].refunded == 7000
    assert refund.state == RefundState.SUCCEEDED and refund.reason == RefundReason.UNDELIVERABLE
    assert refund.decided_by.startswith("system:")
    assert units(order) == {"0811": DeliveryStatus.DELIVERED, "FAIL-1": DeliveryStatus.REFUNDED}
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED
    assert order_refunded_kopecks(order_id=order.pk) == 7000
    assert Payment.objects.get(payment_id=order.payment_id).refunded_kopecks == 7000
    attempt = RefundAttempt.objects.get(refund=refund)
    assert (attempt.method, attempt.outcome) == ("Cancel", "succeeded")
    assert "Token" not in attempt.request and attempt.request["ExternalRequestId"] == refund.external_request_id


def test_receipt_quantity_counts_the_refunded_units_of_one_item(shop, bank, django_capture_on_commit_callbacks):
    order = shop([(10000, 1, "0811"), (2500, 3, "FAIL-2")])

    run(order, django_capture_on_commit_callbacks)

    (cancel,) = bank.calls("Cancel")
    assert cancel["Amount"] == 7500
    assert [(i["Price"], i["Quantity"], i["Amount"]) for i in cancel["Receipt"]["Items"]] == [(2500, 3, 7500)]


def test_refund_of_the_whole_payment_is_a_full_cancel_without_amount_or_receipt(
    shop, bank, django_capture_on_commit_callbacks
):
    order = shop([(9000, 2, "FAIL-3")])

    run(order, django_capture_on_commit_callbacks)

    (cancel,) = bank.calls("Cancel")
    assert "Amount" not in cancel and "Receipt" not in cancel
    assert bank.payments[order.payment_id].status == "REFUNDED"
    assert status_of(order) == OrderStatus.REFUNDED
    assert set(units(order).values()) == {DeliveryStatus.REFUNDED}


def test_a_wrong_password_is_refused_and_never_stored(shop, bank, settings, django_capture_on_commit_callbacks):
    settings.TBANK_PASSWORD = "not-the-terminal-password"
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])

    run(order, django_capture_on_commit_callbacks)

    refund = Refund.objects.get(order=order)
    assert refund.state == RefundState.FAILED and refund.last_error_code == "204"
    assert bank.payments[order.payment_id].refunded == 0
    assert status_of(order) == OrderStatus.PAID  # not final: a unit is neither delivered nor refunded
    stored = str(list(RefundAttempt.objects.values())) + str(list(Refund.objects.values()))
    assert "not-the-terminal-password" not in stored


# --- unknown outcomes and repeats ---------------------------------------------------------------


def test_unknown_cancel_outcome_is_settled_by_getstate_without_a_second_cancel(
    shop, bank, django_capture_on_commit_callbacks
):
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    bank.inject("Cancel", Fault("http500_after"))  # the bank refunds, the answer is lost

    run(order, django_capture_on_commit_callbacks)

    assert len(bank.calls("Cancel")) == 1
    assert [name for name, _ in bank.requests] == ["Cancel", "GetState"]
    refund = Refund.objects.get(order=order)
    assert refund.state == RefundState.SUCCEEDED
    assert list(refund.attempts.values_list("method", "outcome")) == [
        ("Cancel", "unavailable"),
        ("GetState", "refunded"),
    ]
    assert bank.payments[order.payment_id].refunded == 7000
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED


def test_cancel_that_never_reached_the_bank_is_sent_again_with_the_same_external_request_id(
    shop, bank, django_capture_on_commit_callbacks
):
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    bank.inject("Cancel", Fault("http500"))  # nothing done at the bank

    run(order, django_capture_on_commit_callbacks)

    first, second = bank.calls("Cancel")
    assert [name for name, _ in bank.requests] == ["Cancel", "GetState", "Cancel"]
    assert first["ExternalRequestId"] == second["ExternalRequestId"]
    assert bank.payments[order.payment_id].refunded == 7000
    assert Refund.objects.get(order=order).state == RefundState.SUCCEEDED


def test_a_repeated_cancel_with_the_same_external_request_id_refunds_once(
    shop, bank, monkeypatch, django_capture_on_commit_callbacks
):
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    bank.inject("Cancel", Fault("http500_after"))  # refunded at the bank, answer lost
    # A GetState that lags behind the refund: it says nothing was refunded, so we send again.
    real_get_state = bank._method_GetState
    lagging = iter([{"Status": "CONFIRMED", "Amount": order.amount_kopecks}])

    def get_state(body):
        answer = real_get_state(body)
        return {**answer, **next(lagging, {})}

    monkeypatch.setattr(bank, "_method_GetState", get_state)

    run(order, django_capture_on_commit_callbacks)

    first, second = bank.calls("Cancel")
    assert first["ExternalRequestId"] == second["ExternalRequestId"]
    assert bank.payments[order.payment_id].refunded == 7000  # once
    refund = Refund.objects.get(order=order)
    assert refund.state == RefundState.SUCCEEDED
    assert Payment.objects.get(payment_id=order.payment_id).refunded_kopecks == 7000


def test_getstate_unavailable_leaves_the_refund_checking_and_the_sweep_settles_it(
    shop, bank, settings, django_capture_on_commit_callbacks
):
    settings.REFUND_CHECK_INTERVAL_SECONDS = 0
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    bank.inject("Cancel", Fault("http500_after"))
    bank.inject("GetState", Fault("http500"))

    run(order, django_capture_on_commit_callbacks)
    refund = Refund.objects.get(order=order)
    assert refund.state == RefundState.CHECKING
    assert status_of(order) == OrderStatus.PAID

    with django_capture_on_commit_callbacks(execute=True):
        refunds_reconcile()

    refund.refresh_from_db()
    assert refund.state == RefundState.SUCCEEDED
    assert len(bank.calls("Cancel")) == 1
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED


def test_a_worker_killed_mid_cancel_is_recovered_by_getstate_not_a_blind_repeat(
    shop, bank, settings, django_capture_on_commit_callbacks
):
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)  # decides the refund; its send task is never run (a lost message)
    refund = Refund.objects.get(order=order)
    assert refund.state == RefundState.DECIDED
    # A worker took it, sent the Cancel (the bank did it) and died before recording the answer.
    refund_transition(refund_id=refund.pk, target=RefundState.SENDING, claim_token="dead", claim_expires_at=None)
    bank.payments[order.payment_id].refunded = 7000
    bank.payments[order.payment_id].status = "PARTIAL_REFUNDED"
    Refund.objects.filter(pk=refund.pk).update(claim_expires_at="2000-01-01T00:00:00Z")

    with django_capture_on_commit_callbacks(execute=True):
        refunds_reconcile()

    refund.refresh_from_db()
    assert refund.state == RefundState.SUCCEEDED
    assert bank.calls("Cancel") == []
    assert bank.payments[order.payment_id].refunded == 7000


def test_a_lost_send_message_is_queued_again_by_the_sweep(shop, bank, settings, django_capture_on_commit_callbacks):
    settings.REFUND_CLAIM_SECONDS = 0
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)  # the on_commit publish never runs: the message is lost
    assert Refund.objects.get(order=order).state == RefundState.DECIDED

    with django_capture_on_commit_callbacks(execute=True):
        refunds_reconcile()

    assert Refund.objects.get(order=order).state == RefundState.SUCCEEDED
    assert len(bank.calls("Cancel")) == 1


def test_two_send_runs_of_one_refund_make_one_cancel(shop, bank):
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)
    refund = Refund.objects.get(order=order)

    refund_send(refund_id=refund.pk)
    refund_send(refund_id=refund.pk)

    assert len(bank.calls("Cancel")) == 1


# --- policies -----------------------------------------------------------------------------------


def test_staff_policy_sends_nothing_until_staff_refund(shop, bank, settings, django_capture_on_commit_callbacks):
    settings.REFUND_POLICY = "staff"
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])

    run(order, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        refunds_reconcile()

    assert not Refund.objects.exists() and bank.calls("Cancel") == []
    assert units(order)["FAIL-1"] == DeliveryStatus.FAILED
    assert status_of(order) == OrderStatus.PAID

    with django_capture_on_commit_callbacks(execute=True):
        refund = refund_decide_undelivered(order_id=order.pk, decided_by="alice", reason=RefundReason.STAFF)

    refund.refresh_from_db()
    assert refund.state == RefundState.SUCCEEDED and refund.decided_by == "alice"
    assert [call["Amount"] for call in bank.calls("Cancel")] == [7000]
    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED


def test_auto_policy_waits_until_no_unit_is_in_progress(shop, bank, scripted_provider, settings):
    from fulfillment.providers.base import FailureScope, FulfillmentResult

    order = shop([(10000, 1, "0811"), (7000, 1, "0822")])
    first, second = order.items.select_related("product").order_by("id")
    scripted_provider.script(first.product.sku, FulfillmentResult.pending(message="later"))
    scripted_provider.script(second.product.sku, FulfillmentResult.failed(scope=FailureScope.PERMANENT, code="bad"))

    fulfill_order(order.pk)

    assert units(order) == {"0811": DeliveryStatus.PENDING, "0822": DeliveryStatus.FAILED}
    assert not Refund.objects.exists()
    refunds_reconcile()
    assert not Refund.objects.exists()
    Delivery.objects.filter(order=order, status=DeliveryStatus.PENDING).update(next_attempt_at="2000-01-01T00:00:00Z")

    fulfill_order(order.pk)  # the pending unit is delivered: nothing is in progress any more

    refund = Refund.objects.get(order=order)
    assert refund.amount_kopecks == 7000 and refund.state == RefundState.DECIDED


def test_unknown_outcome_and_halted_provider_units_are_not_refunded_automatically(shop, bank, settings):
    settings.REFUND_POLICY = "staff"
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-unknown"), (3000, 1, "FAIL-halted")])
    fulfill_order(order.pk)
    Delivery.objects.filter(order=order, item__recipient="FAIL-unknown").update(last_code=UNKNOWN_OUTCOME_CODE)
    Delivery.objects.filter(order=order, item__recipient="FAIL-halted").update(provider="digiflazz")
    ProviderHalt.objects.create(provider="digiflazz", code="83", reason="deposit empty")
    settings.REFUND_POLICY = "auto"

    refunds_reconcile()

    assert not Refund.objects.exists()
    assert units(order)["FAIL-unknown"] == DeliveryStatus.FAILED
    # Staff, having checked with the provider, can refund the unknown one; the halted one waits.
    refund = refund_decide_undelivered(order_id=order.pk, decided_by="alice", include_unknown=True)
    assert list(refund.units.values_list("item__recipient", flat=True)) == ["FAIL-unknown"]
    assert units(order)["FAIL-halted"] == DeliveryStatus.FAILED


def test_a_unit_failed_by_a_fault_not_its_own_is_not_refunded(shop, bank, settings):
    # Older data: a unit FAILED by a shop or product fault goes back to waiting once the fault
    # clears; giving its money back meanwhile would refund a unit that may still be delivered.
    settings.REFUND_POLICY = "staff"
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-shop"), (3000, 1, "FAIL-product")])
    fulfill_order(order.pk)
    Delivery.objects.filter(order=order, item__recipient="FAIL-shop").update(failure_scope="shop")
    Delivery.objects.filter(order=order, item__recipient="FAIL-product").update(failure_scope="product")
    settings.REFUND_POLICY = "auto"

    refunds_reconcile()

    assert not Refund.objects.exists()
    preview = refund_services.undelivered_units_preview(order_id=order.pk)
    assert sorted(unit.item.recipient for unit in preview.held) == ["FAIL-product", "FAIL-shop"]
    assert preview.units == [] and preview.nothing_to_refund


def test_staff_refund_of_an_order_still_delivering_is_refused_with_the_reason(shop, bank, scripted_provider):
    from fulfillment.providers.base import FulfillmentResult

    order = shop([(10000, 1, "0811")])
    scripted_provider.script(order.items.get().product.sku, FulfillmentResult.pending())
    fulfill_order(order.pk)

    with pytest.raises(RefundNotPossible, match="still being delivered"):
        refund_decide_undelivered(order_id=order.pk, decided_by="alice")
    assert not Refund.objects.exists()


# --- refund versus delivery ---------------------------------------------------------------------


def test_a_staff_retry_first_keeps_the_unit_from_being_refunded(shop, bank, settings):
    settings.REFUND_POLICY = "staff"
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)
    settings.REFUND_POLICY = "auto"

    order_fulfillment_reset_for_retry(order_id=order.pk)

    assert units(order)["FAIL-1"] == DeliveryStatus.WAITING
    with pytest.raises(RefundNotPossible, match="still being delivered"):
        refund_decide_undelivered(order_id=order.pk, decided_by="alice")
    refunds_reconcile()
    assert not Refund.objects.exists()


def test_a_refund_first_keeps_the_unit_from_being_retried_or_delivered(shop, bank, settings):
    settings.REFUND_POLICY = "staff"
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)
    refund = refund_decide_undelivered(order_id=order.pk, decided_by="alice")

    decision = order_fulfillment_reset_for_retry(order_id=order.pk)
    Delivery.objects.filter(order=order).update(next_attempt_at="2000-01-01T00:00:00Z")
    fulfill_order(order.pk)

    assert not decision.queued
    unit = Delivery.objects.get(order=order, item__recipient="FAIL-1")
    assert unit.status == DeliveryStatus.REFUNDING and unit.refund_id == refund.pk
    assert unit.purchase_attempts == 1  # never sent again


def test_a_retry_that_wins_between_the_decisions_read_and_write_cancels_the_decision(shop, bank, monkeypatch):
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    real_preview = refund_services.undelivered_units_preview
    # Stop the automatic decision so the race is staged on a FAILED unit.
    monkeypatch.setattr(refund_services, "order_settle_undelivered", lambda order_id: "paid")
    fulfill_order(order.pk)
    assert units(order)["FAIL-1"] == DeliveryStatus.FAILED

    def preview_then_retry(**kwargs):
        preview = real_preview(**kwargs)
        # The staff retry's conditional UPDATE lands after our read of the FAILED units.
        Delivery.objects.filter(order=order, status=DeliveryStatus.FAILED).update(status=DeliveryStatus.WAITING)
        return preview

    monkeypatch.setattr(refund_services.decisions, "undelivered_units_preview", preview_then_retry)

    assert refund_decide_undelivered(order_id=order.pk, decided_by="alice") is None

    assert not Refund.objects.exists()
    # (The staged write shares our connection, so the rollback undid it too; across processes
    # the retry's committed WAITING stays.) The decision took nothing.
    assert units(order)["FAIL-1"] != DeliveryStatus.REFUNDING


def test_two_decisions_make_one_refund(shop, bank, settings):
    settings.REFUND_POLICY = "staff"
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)

    first = refund_decide_undelivered(order_id=order.pk, decided_by="alice")
    second = refund_decide_undelivered(order_id=order.pk, decided_by="bob")

    assert first is not None and second is None
    assert Refund.objects.count() == 1


def test_the_delivery_sweep_leaves_refunding_units_alone(shop, bank, settings):
    settings.REFUND_POLICY = "staff"
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    fulfill_order(order.pk)
    refund_decide_undelivered(order_id=order.pk, decided_by="alice")
    Delivery.objects.filter(order=order).update(next_attempt_at="2000-01-01T00:00:00Z", queued_at=None)

    assert paid_orders_reconcile() == []


# --- what the customer and the lead's code see --------------------------------------------------


def test_customer_statuses_of_units():
    assert {status: unit_customer_status(status=status) for status in DeliveryStatus.values} == {
        "waiting": "waiting",
        "sending": "in_progress",
        "pending": "in_progress",
        "delivered": "delivered",
        "failed": "failed",
        "cancelled": "refunded",
        "refunding": "refunding",
        "refunded": "refunded",
    }
    with pytest.raises(ValueError, match="not a delivery status"):
        unit_customer_status(status="lost")


def test_refund_email_tells_what_was_refunded_and_is_announced_on_commit(
    shop, bank, django_capture_on_commit_callbacks
):
    settled = []

    def receiver(sender, refund_id, order_id, **kwargs):
        settled.append((refund_id, order_id))

    signals.refund_settled.connect(receiver)
    try:
        order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
        run(order, django_capture_on_commit_callbacks)
    finally:
        signals.refund_settled.disconnect(receiver)

    refund = Refund.objects.get(order=order)
    assert settled == [(refund.pk, order.pk)]
    email = refund_email_build(refund_id=refund.pk)
    assert email.to == "buyer@example.com"
    assert "70.00" in email.subject and order.public_id in email.subject
    assert "FAIL-1" in email.text and "70.00 ₽" in email.text


def test_a_settled_refund_emails_the_customer_once_through_the_outbox(
    shop, bank, mailoutbox, django_capture_on_commit_callbacks
):
    from orders.models import CustomerEmail, EmailState
    from orders.services.emails import customer_email_send

    # Nothing delivered, everything refunded: the refund email is the customer's one email.
    order = shop([(7000, 1, "FAIL-1")])
    run(order, django_capture_on_commit_callbacks)

    refund = Refund.objects.get(order=order)
    email = CustomerEmail.objects.get(order=order, kind="refund")
    assert (email.event, email.state) == (f"refund-{refund.pk}", EmailState.SENT)
    refund_mail = [message for message in mailoutbox if "Refund" in message.subject]
    assert len(refund_mail) == 1
    assert "70.00" in refund_mail[0].subject and "FAIL-1" in refund_mail[0].body
    assert order.access_token in refund_mail[0].body  # the status link
    # Settling again (a duplicated notification, a second task) records and sends nothing more.
    assert customer_email_send(email_id=email.pk) == "already_sent"
    assert CustomerEmail.objects.filter(order=order, kind="refund").count() == 1


def test_a_partly_refunded_order_gets_one_email_with_its_codes_and_its_refund(
    shop, bank, mailoutbox, client, django_capture_on_commit_callbacks
):
    from orders.models import CustomerEmail

    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-1")])
    run(order, django_capture_on_commit_callbacks)

    assert status_of(order) == OrderStatus.PARTIALLY_REFUNDED
    # One email says both what was delivered (the codes) and what was refunded: not two that
    # arrive in the same second, one calling the order delivered.
    assert list(CustomerEmail.objects.filter(order=order).values_list("kind", flat=True)) == ["codes"]
    (mail,) = mailoutbox
    assert "codes" in mail.subject.lower() and "refund of 70.00 ₽" in mail.subject.lower()
    delivered = Delivery.objects.get(order=order, status=DeliveryStatus.DELIVERED)
    assert delivered.serial and delivered.serial in mail.body
    assert "money for the rest is refunded" in mail.body
    refunded_part = mail.body[mail.body.index("Not delivered, refunded to your card:") :]
    assert "FAIL-1" in refunded_part and "70.00 ₽" in refunded_part and delivered.serial not in refunded_part
    assert "—" not in mail.body  # no placeholder for a unit that has no code
    order.refresh_from_db()
    page = client.get(f"/orders/{order.public_id}/?token={order.access_token}&lang=en").content.decode()
    assert "Partly delivered, the rest refunded" in page


def test_money_balance_adds_up(shop, bank, django_capture_on_commit_callbacks):
    order = shop([(10000, 2, "0811"), (7000, 1, "FAIL-1")])
    run(order, django_capture_on_commit_callbacks)

    balance = refund_services.order_money_balance(order_id=order.pk)

    assert (balance.paid, balance.delivered, balance.refunded, balance.outstanding) == (27000, 20000, 7000, 0)
    assert Refund.objects.filter(order=order).aggregate(total=Sum("amount_kopecks"))["total"] == 7000


def test_mock_refuses_listed_recipients_permanently(shop, bank, settings):
    settings.REFUND_POLICY = "staff"
    order = shop([(10000, 1, "0811"), (7000, 1, "FAIL-9")])

    fulfill_order(order.pk)

    failed = Delivery.objects.get(order=order, item__recipient="FAIL-9")
    assert (failed.status, failed.failure_scope, failed.last_code) == ("failed", "permanent", "MOCK_REFUSED")
    assert failed.purchase_attempts == 1
