"""The order status machine (orders.state) and Order.save()'s refusal to change a status or
write back what a stale instance holds."""

from __future__ import annotations

import itertools

import pytest
from django.db.models.query import QuerySet
from django.utils import timezone

from orders.models import Order, StatusAssignmentError
from orders.services import order_mark_paid
from orders.state import (
    TRANSITIONS,
    IllegalTransition,
    OrderStatus,
    can_transition,
    order_transition,
    order_transition_returning,
)

STATUSES = list(OrderStatus)
LEGAL = {
    (OrderStatus.NEW, OrderStatus.PAID),
    (OrderStatus.CANCELLED, OrderStatus.PAID),
    (OrderStatus.PAID, OrderStatus.FULFILLED),
    (OrderStatus.NEW, OrderStatus.CANCELLED),
    (OrderStatus.PAID, OrderStatus.REFUNDED),
    (OrderStatus.FULFILLED, OrderStatus.REFUNDED),
    (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED),
    (OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED),
}
PAIRS = [(a, b) for a, b in itertools.product(STATUSES, STATUSES) if a != b]
STAMPS = {
    OrderStatus.PAID: "paid_at",
    OrderStatus.FULFILLED: "fulfilled_at",
    OrderStatus.CANCELLED: "cancelled_at",
    OrderStatus.PARTIALLY_REFUNDED: "refunded_at",
    OrderStatus.REFUNDED: "refunded_at",
}


def put_in_status(order: Order, status: str) -> Order:
    """Set the status directly in the database (test setup only; bypasses the machine)."""
    Order.objects.filter(pk=order.pk).update(status=status)
    order.refresh_from_db()
    return order


def test_transition_table_is_the_documented_one():
    # Pinning the table: a new edge must be a deliberate change of this test too.
    assert {(src, dst) for dst, sources in TRANSITIONS.items() for src in sources} == LEGAL


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL))
def test_legal_transition_changes_status_and_stamps_time(order_factory, current, target):
    order = put_in_status(order_factory(), current)

    result = order_transition(order_id=order.pk, target=target)

    assert (result.changed, result.previous, result.current) == (True, current, target)
    order.refresh_from_db()
    assert order.status == target
    assert getattr(order, STAMPS[target]) is not None
    assert order.status_changed_at == getattr(order, STAMPS[target])


@pytest.mark.parametrize(("current", "target"), [pair for pair in PAIRS if pair not in LEGAL])
def test_illegal_transition_raises_and_changes_nothing(order_factory, current, target):
    order = put_in_status(order_factory(), current)
    before = Order.objects.filter(pk=order.pk).values().get()

    with pytest.raises(IllegalTransition) as excinfo:
        order_transition(order_id=order.pk, target=target, customer_email="changed@example.com")

    message = str(excinfo.value)
    assert f"Order {order.pk} is {current}" in message
    assert f"cannot become {target}" in message
    assert (excinfo.value.order_id, excinfo.value.current, excinfo.value.target) == (order.pk, current, target)
    assert Order.objects.filter(pk=order.pk).values().get() == before


def test_illegal_transition_message_names_the_allowed_sources(order_factory):
    order = put_in_status(order_factory(), OrderStatus.FULFILLED)
    with pytest.raises(IllegalTransition, match=r"only an order that is cancelled, new can"):
        order_transition(order_id=order.pk, target=OrderStatus.PAID)


def test_no_order_can_become_new_again(order_factory):
    order = put_in_status(order_factory(), OrderStatus.CANCELLED)
    with pytest.raises(IllegalTransition, match=r"cannot become new \(no order can\)"):
        order_transition(order_id=order.pk, target=OrderStatus.NEW)


def test_unknown_target_status_is_a_programming_error(order_factory):
    order = order_factory()
    with pytest.raises(ValueError, match="'shipped' is not an order status; use one of new, paid"):
        order_transition(order_id=order.pk, target="shipped")
    assert Order.objects.get(pk=order.pk).status == OrderStatus.NEW


@pytest.mark.parametrize("status", STATUSES)
def test_repeat_to_the_same_status_is_a_no_op(order_factory, status):
    order = put_in_status(order_factory(), status)
    before = Order.objects.filter(pk=order.pk).values().get()

    result = order_transition(order_id=order.pk, target=status, customer_email="changed@example.com")

    assert (result.changed, result.previous, result.current) == (False, status, status)
    assert Order.objects.filter(pk=order.pk).values().get() == before


@pytest.mark.parametrize(("current", "target"), PAIRS + [(s, s) for s in STATUSES])
def test_can_transition_agrees_with_the_table(current, target):
    assert can_transition(current, target) is ((current, target) in LEGAL)


def test_fields_are_written_with_the_status(order_factory):
    order = order_factory()
    order_transition(order_id=order.pk, target=OrderStatus.PAID, payment_id="555")
    order.refresh_from_db()
    assert (order.status, order.payment_id) == (OrderStatus.PAID, "555")


def test_unknown_order_raises_does_not_exist(db):
    with pytest.raises(Order.DoesNotExist, match="Order 987654 does not exist"):
        order_transition(order_id=987654, target=OrderStatus.PAID)


# --- races: another process changes the order between our read and our write -----------------


@pytest.fixture
def concurrent_writer(monkeypatch):
    """concurrent_writer(order, status): the next conditional status UPDATE of `order` first sees
    another process move it to `status` (as if that process committed between our read and write)."""
    original_update = QuerySet.update

    def arm(order: Order, status: str) -> None:
        fired = []

        def update(self, **kwargs):
            if self.model is Order and "status" in kwargs and not fired:
                fired.append(True)
                original_update(Order.objects.filter(pk=order.pk), status=status)
            return original_update(self, **kwargs)

        monkeypatch.setattr(QuerySet, "update", update)

    return arm


def test_race_lost_to_the_same_target_reports_no_change(order_factory, concurrent_writer):
    order = order_factory()
    concurrent_writer(order, OrderStatus.PAID)

    result = order_transition(order_id=order.pk, target=OrderStatus.PAID, payment_id="1")

    assert (result.changed, result.previous, result.current) == (False, OrderStatus.PAID, OrderStatus.PAID)
    order.refresh_from_db()
    assert (order.status, order.payment_id, order.paid_at) == (OrderStatus.PAID, "", None)


def test_race_lost_to_an_incompatible_status_raises(order_factory, concurrent_writer):
    order = order_factory()
    concurrent_writer(order, OrderStatus.PAID)

    with pytest.raises(IllegalTransition) as excinfo:
        order_transition(order_id=order.pk, target=OrderStatus.CANCELLED)

    assert excinfo.value.current == OrderStatus.PAID
    order.refresh_from_db()
    assert (order.status, order.cancelled_at) == (OrderStatus.PAID, None)


def test_race_to_another_legal_source_is_retried(order_factory, concurrent_writer):
    # NEW -> (someone cancels) -> our PAID still applies, from CANCELLED.
    order = order_factory()
    concurrent_writer(order, OrderStatus.CANCELLED)

    result = order_transition(order_id=order.pk, target=OrderStatus.PAID)

    assert (result.changed, result.previous, result.current) == (True, OrderStatus.CANCELLED, OrderStatus.PAID)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.PAID


def test_stale_guess_of_the_current_status_costs_a_read_not_a_wrong_write(order_factory):
    order = put_in_status(order_factory(), OrderStatus.FULFILLED)

    with pytest.raises(IllegalTransition) as excinfo:
        order_transition(order_id=order.pk, target=OrderStatus.CANCELLED, current=OrderStatus.NEW)

    assert excinfo.value.current == OrderStatus.FULFILLED
    assert Order.objects.get(pk=order.pk).status == OrderStatus.FULFILLED


# --- Order.save() ----------------------------------------------------------------------------


@pytest.mark.parametrize("update_fields", [None, ["status"], ["status", "customer_email"]])
def test_save_refuses_a_status_change(order_factory, update_fields):
    order = order_factory()
    order.status = OrderStatus.PAID
    with pytest.raises(StatusAssignmentError, match=f"Order {order.pk}: status changes go through"):
        order.save(update_fields=update_fields)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.NEW


def test_save_refuses_a_status_change_on_a_fetched_order(order_factory):
    order = Order.objects.get(pk=order_factory().pk)
    order.status = OrderStatus.FULFILLED
    with pytest.raises(StatusAssignmentError):
        order.save()
    assert Order.objects.get(pk=order.pk).status == OrderStatus.NEW


def test_save_refuses_a_new_order_that_is_not_new(db):
    with pytest.raises(StatusAssignmentError, match="A new order starts as NEW"):
        Order(amount_kopecks=100, status=OrderStatus.PAID).save()
    assert not Order.objects.exists()


def test_save_of_other_fields_is_allowed(order_factory):
    order = Order.objects.get(pk=order_factory().pk)
    order.customer_email = "new@example.com"
    order.save()
    assert Order.objects.get(pk=order.pk).customer_email == "new@example.com"


def test_save_with_update_fields_without_status_writes_only_those(order_factory):
    order = order_factory()
    order.status = OrderStatus.PAID  # in memory only
    order.customer_email = "new@example.com"
    order.save(update_fields=["customer_email"])
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.customer_email) == (OrderStatus.NEW, "new@example.com")


def test_save_after_refresh_follows_the_machine(order_factory):
    order = order_factory()
    order_transition(order_id=order.pk, target=OrderStatus.PAID)
    order.refresh_from_db()
    order.customer_email = "new@example.com"
    order.save()
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.customer_email) == (OrderStatus.PAID, "new@example.com")


def test_save_of_a_stale_instance_does_not_revert_the_status(order_factory):
    # The instance was loaded while NEW; the webhook made it PAID meanwhile. Saving an unrelated
    # field (the admin's change form does this) must not write the stale status back.
    stale = Order.objects.get(pk=order_factory().pk)
    order_transition(order_id=stale.pk, target=OrderStatus.PAID)

    stale.customer_email = "new@example.com"
    stale.save()

    stored = Order.objects.get(pk=stale.pk)
    assert (stored.status, stored.customer_email) == (OrderStatus.PAID, "new@example.com")


def test_save_with_deferred_status_cannot_smuggle_a_status_change(order_factory):
    order = Order.objects.only("id", "customer_email").get(pk=order_factory().pk)
    order.status = OrderStatus.PAID
    with pytest.raises(StatusAssignmentError):
        order.save()
    assert Order.objects.get(pk=order.pk).status == OrderStatus.NEW


def test_a_stale_instance_saved_after_a_payment_keeps_the_payment(order_factory):
    # Loaded while NEW (an admin form, a task); the webhook pays the order meanwhile. Saving the
    # stale instance used to write its old payment_id and paid_at back over the payment.
    stale = Order.objects.get(pk=order_factory().pk)
    order_mark_paid(order_id=stale.pk, payment_id="8742591")
    paid = Order.objects.get(pk=stale.pk)

    stale.customer_email = "new@example.com"
    stale.save()

    stored = Order.objects.get(pk=stale.pk)
    assert (stored.status, stored.payment_id, stored.paid_at, stored.status_changed_at) == (
        OrderStatus.PAID,
        "8742591",
        paid.paid_at,
        paid.status_changed_at,
    )
    assert stored.customer_email == "new@example.com"


def test_a_stale_instance_saving_named_payment_fields_keeps_the_payment(order_factory):
    stale = Order.objects.get(pk=order_factory().pk)
    order_mark_paid(order_id=stale.pk, payment_id="8742591")

    stale.save(update_fields=["payment_id", "paid_at", "status_changed_at"])

    stored = Order.objects.get(pk=stale.pk)
    assert (stored.payment_id, stored.paid_at is not None) == ("8742591", True)


@pytest.mark.parametrize(
    ("field", "value"),
    [("payment_id", "forged-1"), ("paid_at", "now"), ("refunded_at", "now"), ("status_changed_at", "now")],
)
def test_save_refuses_to_change_a_field_the_status_machine_owns(order_factory, field, value):
    order = Order.objects.get(pk=order_factory().pk)
    setattr(order, field, timezone.now() if value == "now" else value)
    order.customer_email = "new@example.com"

    with pytest.raises(StatusAssignmentError, match=f"Order {order.pk}: {field}"):
        order.save()

    stored = Order.objects.get(pk=order.pk)
    assert (getattr(stored, field) or None, stored.customer_email) == (None, "c@example.com")


def test_save_writes_only_the_changed_fields(order_factory, django_assert_num_queries):
    order = Order.objects.get(pk=order_factory().pk)
    order.customer_email = "new@example.com"
    with django_assert_num_queries(1) as captured:
        order.save()
    sql = captured.captured_queries[0]["sql"]
    assert "customer_email" in sql and "amount_kopecks" not in sql and "paid_at" not in sql
    with django_assert_num_queries(0):
        order.save()  # nothing changed since: nothing to write


def test_refreshed_fields_are_not_written_back(order_factory):
    order = Order.objects.get(pk=order_factory().pk)
    order_mark_paid(order_id=order.pk, payment_id="8742591")
    order.refresh_from_db(fields=["payment_id", "paid_at"])
    order.customer_email = "new@example.com"
    order.save()
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.payment_id, stored.customer_email) == (
        OrderStatus.PAID,
        "8742591",
        "new@example.com",
    )


# --- the one-statement transition of the webhook's hot path ------------------------------------


def _pay_returning(order: Order, **lookup) -> Order | None:
    return order_transition_returning(
        lookup={"public_id": order.public_id, "amount_kopecks": order.amount_kopecks, **lookup},
        target=OrderStatus.PAID,
        current=OrderStatus.NEW,
        payment_id="777",
    )


def test_transition_returning_changes_the_matching_order_and_returns_it_as_stored(order_factory):
    order = order_factory()

    paid = _pay_returning(order)

    stored = Order.objects.get(pk=order.pk)
    assert paid is not None and paid.pk == order.pk
    assert (paid.status, paid.payment_id) == (OrderStatus.PAID, "777") == (stored.status, stored.payment_id)
    # Every field comes back as the ORM reads it (datetimes aware, on every backend).
    for field in Order._meta.concrete_fields:
        assert getattr(paid, field.attname) == getattr(stored, field.attname), field.name
    assert paid.paid_at is not None and paid.paid_at == paid.status_changed_at
    assert not paid._state.adding  # a stored instance: save() updates, never inserts


@pytest.mark.parametrize("status", [s for s in STATUSES if s != OrderStatus.NEW])
def test_transition_returning_changes_nothing_unless_the_status_is_the_expected_one(order_factory, status):
    order = put_in_status(order_factory(), status)

    assert _pay_returning(order) is None

    assert Order.objects.get(pk=order.pk).status == status


def test_transition_returning_changes_nothing_when_the_lookup_does_not_match(order_factory):
    order = order_factory(price=10000)

    assert _pay_returning(order, amount_kopecks=9999) is None
    assert _pay_returning(order, public_id="no-such-order") is None

    assert Order.objects.get(pk=order.pk).status == OrderStatus.NEW


def test_transition_returning_refuses_a_pair_the_table_does_not_allow(order_factory):
    order = order_factory()

    with pytest.raises(ValueError, match="cannot become"):
        order_transition_returning(lookup={"pk": order.pk}, target=OrderStatus.FULFILLED, current=OrderStatus.NEW)

    assert Order.objects.get(pk=order.pk).status == OrderStatus.NEW
