"""`manage.py fulfill_order`: exit codes, progress output, --all-paid, --queue, --provider."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryAttempt, DeliveryStatus, MockLedgerEntry
from fulfillment.providers.base import FailureScope, FulfillmentResult
from orders.models import Order
from orders.state import OrderStatus, order_transition
from tests.conftest import delivered_per_unit


def run(*args) -> tuple[int, str, str]:
    """Run the command; return (exit code, stdout, stderr) as manage.py would exit."""
    from io import StringIO

    out, err = StringIO(), StringIO()
    try:
        call_command("fulfill_order", *map(str, args), stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()


def snapshot() -> tuple:
    """Everything the command could change."""
    return (
        list(Order.objects.order_by("pk").values_list("pk", "status")),
        list(Delivery.objects.order_by("pk").values()),
        DeliveryAttempt.objects.count(),
        MockLedgerEntry.objects.count(),
    )


def status_of(order: Order) -> str:
    return Order.objects.values_list("status", flat=True).get(pk=order.pk)


def test_all_delivered_exits_0_with_progress(paid_order_factory):
    order = paid_order_factory(quantities=(1, 2))

    code, out, _ = run(order.pk)

    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"[1/1] order {order.public_id}: delivering..."
    unit_lines = [line for line in lines if line.startswith("    unit ")]
    assert len(unit_lines) == 3
    for unit in Delivery.objects.filter(order=order):
        assert f"    unit {unit.unit_key} [purchase] delivered: serial MOCK-{unit.reference}" in unit_lines
    assert f"[1/1] order {order.public_id}: 3/3 units delivered, order fulfilled" in out
    assert lines[-1] == "Summary: 1 order(s) processed, 0 not fully delivered."
    assert status_of(order) == OrderStatus.FULFILLED
    assert set(delivered_per_unit().values()) == {1}


def test_a_failed_unit_exits_1(paid_order_factory, scripted_provider):
    order = paid_order_factory(quantities=(1, 1))
    sku = order.items.select_related("product").last().product.sku
    scripted_provider.script(sku, FulfillmentResult.failed(scope=FailureScope.PERMANENT, code="40", message="bad no"))

    code, out, err = run(order.pk)

    assert code == 1
    assert "failed: 40 bad no" in out
    assert "1/2 units delivered, order paid" in out
    assert "Summary: 1 order(s) processed, 1 not fully delivered." in out
    assert f"Not fully delivered: {order.public_id}." in err
    assert status_of(order) == OrderStatus.PAID


def test_a_pending_unit_exits_1(paid_order_factory, scripted_provider):
    order = paid_order_factory()
    (item,) = order.items.select_related("product")
    scripted_provider.script(item.product.sku, FulfillmentResult.pending(code="03", message="wait"))

    code, out, _ = run(order.pk)

    assert code == 1
    assert "[purchase] pending: 03 wait" in out


def test_rerun_retries_failed_units_with_a_new_reference(paid_order_factory, scripted_provider):
    order = paid_order_factory()
    (item,) = order.items.select_related("product")
    scripted_provider.script(item.product.sku, FulfillmentResult.failed(scope=FailureScope.PERMANENT, code="40"))
    assert run(order.pk)[0] == 1
    failed_reference = Delivery.objects.get(order=order).reference

    code, out, _ = run(order.pk)

    assert code == 0
    unit = Delivery.objects.get(order=order)
    assert (unit.status, unit.purchase_no) == (DeliveryStatus.DELIVERED, 2)
    assert unit.reference != failed_reference
    assert f"serial SER-{unit.reference}" in out


def test_rerun_rechecks_a_pending_unit_with_the_same_reference(paid_order_factory, scripted_provider):
    order = paid_order_factory()
    (item,) = order.items.select_related("product")
    scripted_provider.script(item.product.sku, FulfillmentResult.pending(code="03"))
    assert run(order.pk)[0] == 1
    reference = Delivery.objects.get(order=order).reference
    assert Delivery.objects.get(order=order).next_attempt_at > timezone.now()  # backing off

    code, out, _ = run(order.pk)

    assert code == 0
    assert scripted_provider.calls_for(item.product.sku) == [("fulfill", reference), ("check", reference)]
    assert f"[check] delivered: serial SER-{reference}" in out


def test_an_already_delivered_order_is_reported(paid_order_factory):
    order = paid_order_factory()
    Delivery.objects.filter(order=order).update(status=DeliveryStatus.DELIVERED)

    code, out, _ = run(order.pk)

    assert code == 0
    assert f"[1/1] order {order.public_id}: every unit is already delivered" in out
    assert status_of(order) == OrderStatus.FULFILLED


@pytest.mark.parametrize("case", ["unknown", "new", "fulfilled", "refunded"])
def test_bad_order_exits_2_and_changes_nothing(paid_order_factory, order_factory, case):
    good = paid_order_factory()
    if case == "unknown":
        bad_id, message = 987654, "No order '987654': give its number (public id) or its database id."
    else:
        bad = order_factory() if case == "new" else paid_order_factory()
        if case != "new":
            order_transition(order_id=bad.pk, target=case)
        bad_id, message = bad.pk, f"Order {bad.pk} is {case}, not paid"
    before = snapshot()

    code, out, err = run(good.pk, bad_id)

    assert code == 2
    assert err.startswith("Nothing was done.") and message in err
    assert out == ""
    assert snapshot() == before


def test_unknown_provider_exits_2_and_changes_nothing(paid_order_factory):
    order = paid_order_factory()
    before = snapshot()

    code, _, err = run(order.pk, "--provider", "nope")

    assert code == 2
    assert "Unknown fulfillment provider 'nope'" in err and "Valid names: digiflazz, mock" in err
    assert snapshot() == before


def test_no_arguments_exits_2(db):
    code, _, err = run()
    assert code == 2
    assert "Give at least one ORDER (its number or database id), or --all-paid." in err


def test_provider_option_uses_that_provider(paid_order_factory, scripted_provider, settings):
    settings.FULFILLMENT_PROVIDER = "mock"
    order = paid_order_factory()

    code, _, _ = run(order.pk, "--provider", "scripted")

    assert code == 0
    assert len(scripted_provider.calls) == 1
    assert not MockLedgerEntry.objects.exists()


def test_all_paid_processes_every_paid_order_only(paid_order_factory, order_factory):
    paid = [paid_order_factory(), paid_order_factory(quantities=(2,))]
    new = order_factory()

    code, out, _ = run("--all-paid")

    assert code == 0
    assert f"[1/2] order {paid[0].public_id}: delivering..." in out
    assert f"[2/2] order {paid[1].public_id}: delivering..." in out
    assert "Summary: 2 order(s) processed, 0 not fully delivered." in out
    assert [status_of(order) for order in paid] == [OrderStatus.FULFILLED, OrderStatus.FULFILLED]
    assert status_of(new) == OrderStatus.NEW


def test_all_paid_with_nothing_to_do(order_factory):
    order_factory()
    code, out, _ = run("--all-paid")
    assert (code, out) == (0, "No paid orders to deliver.\n")


def test_all_paid_does_not_repeat_an_order_given_by_id(paid_order_factory):
    order = paid_order_factory()
    code, out, _ = run(order.pk, "--all-paid")
    assert code == 0
    assert out.count("delivering...") == 1


def test_queue_hands_the_orders_to_the_workers(
    paid_order_factory, queued_deliveries, django_capture_on_commit_callbacks
):
    first, second = paid_order_factory(), paid_order_factory()
    Delivery.objects.update(status=DeliveryStatus.FAILED, next_attempt_at=timezone.now() + timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        code, out, _ = run(first.pk, second.pk, "--queue")

    assert code == 0
    assert f"[1/2] order {first.public_id}: queued" in out and f"[2/2] order {second.public_id}: queued" in out
    assert "Summary: 2 order(s) queued, 0 not fully delivered." in out
    assert queued_deliveries == [first.pk, second.pk]
    # Nothing was delivered here; the failed units were reset for the workers.
    assert not MockLedgerEntry.objects.exists()
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.WAITING}
    assert all(unit.next_attempt_at <= timezone.now() for unit in Delivery.objects.all())


def test_queue_with_provider_is_refused(paid_order_factory, queued_deliveries):
    order = paid_order_factory()
    code, _, err = run(order.pk, "--queue", "--provider", "mock")
    assert code == 2
    assert "--provider applies to foreground runs only" in err
    assert queued_deliveries == []


def test_an_order_is_named_by_its_public_id_or_its_database_id(paid_order_factory):
    """The number on the customer's page and in the admin works as well as the database id."""
    first, second = paid_order_factory(), paid_order_factory()

    code, out, _ = run(first.public_id, second.pk, first.pk)

    assert code == 0
    assert f"[1/2] order {first.public_id}: delivering..." in out
    assert f"[2/2] order {second.public_id}: delivering..." in out
    assert set(Order.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)) == {
        OrderStatus.FULFILLED
    }


def test_an_unknown_public_id_exits_2_and_says_what_to_give(paid_order_factory):
    good = paid_order_factory()
    before = snapshot()

    code, out, err = run(good.public_id, "f1a8e1f3nothere")

    assert code == 2 and out == ""
    assert "No order 'f1a8e1f3nothere': give its number (public id) or its database id." in err
    assert snapshot() == before
