"""What reconciliation repairs, found by the integration tests (tests/integration/test_failures.py):

* a message queued before a unit fell due does not hold that unit back until
  FULFILLMENT_STALE_AFTER_SECONDS (the provider-outage test: retries waited the stale window
  instead of their backoff);
* a PAID order whose units are all delivered is marked fulfilled (the worker-crash test: a worker
  killed between recording the last delivery and marking the order left it PAID for good);
* a delivery task that could not be sent (broker down) is queued by the next sweep, and the
  caller does not fail (the broker-down test: the webhook answered 500 to an applied payment).
"""

from datetime import timedelta

from django.utils import timezone
from kombu.exceptions import OperationalError

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.services import order_fulfillment_publish, paid_orders_reconcile
from fulfillment.tasks import deliver_order
from orders.models import Order


def test_a_unit_whose_backoff_ended_after_its_order_was_queued_is_queued_again(paid_order_factory, queued_deliveries):
    order = paid_order_factory()
    now = timezone.now()
    # The order was queued 2 s ago (for another unit, or by an earlier sweep); this unit's retry
    # backoff ended 1 s ago, so that run found it not yet due and left it alone.
    Delivery.objects.filter(order=order).update(
        queued_at=now - timedelta(seconds=2), next_attempt_at=now - timedelta(seconds=1)
    )

    assert paid_orders_reconcile() == [order.pk]
    # Queued now, after it fell due: the next sweep leaves it to that message.
    assert paid_orders_reconcile() == []


def test_a_unit_whose_claim_expired_after_its_order_was_queued_is_queued_again(paid_order_factory, queued_deliveries):
    order = paid_order_factory()
    now = timezone.now()
    # Queued while a (since dead) worker still held the unit: that run could not take it.
    Delivery.objects.filter(order=order).update(
        status=DeliveryStatus.SENDING,
        claim_token="dead-worker",
        claim_expires_at=now - timedelta(seconds=1),
        queued_at=now - timedelta(seconds=2),
    )

    assert paid_orders_reconcile() == [order.pk]
    assert paid_orders_reconcile() == []


def test_a_unit_not_yet_due_is_not_queued_again(paid_order_factory, queued_deliveries):
    order = paid_order_factory()
    now = timezone.now()
    Delivery.objects.filter(order=order).update(
        queued_at=now - timedelta(seconds=2), next_attempt_at=now + timedelta(seconds=30)
    )

    assert paid_orders_reconcile() == []


def test_a_paid_order_whose_units_are_all_delivered_is_marked_fulfilled(paid_order_factory, queued_deliveries):
    order = paid_order_factory(quantities=(2,))
    # The worker recorded the last delivery, then died before marking the order fulfilled.
    Delivery.objects.filter(order=order).update(status=DeliveryStatus.DELIVERED, delivered_at=timezone.now())

    assert paid_orders_reconcile() == []  # nothing to send

    assert Order.objects.values_list("status", flat=True).get(pk=order.pk) == "fulfilled"
    assert queued_deliveries == []


def test_a_paid_order_with_a_unit_not_delivered_stays_paid(paid_order_factory, queued_deliveries):
    order = paid_order_factory(quantities=(2,))
    first, second = Delivery.objects.filter(order=order)
    Delivery.objects.filter(pk=first.pk).update(status=DeliveryStatus.DELIVERED)
    Delivery.objects.filter(pk=second.pk).update(status=DeliveryStatus.FAILED)

    paid_orders_reconcile()

    assert Order.objects.values_list("status", flat=True).get(pk=order.pk) == "paid"


def test_a_task_the_broker_refused_is_queued_by_the_next_sweep(
    paid_order_factory, monkeypatch, django_capture_on_commit_callbacks
):
    order = paid_order_factory(quantities=(2,))  # its units are stamped as queued just now
    sent = []

    def broker_down(order_id):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(deliver_order, "delay", broker_down)
    order_fulfillment_publish(order_id=order.pk)  # logged, not raised

    monkeypatch.setattr(deliver_order, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        assert paid_orders_reconcile() == [order.pk]  # well inside the stale window
    assert sent == [order.pk]


def test_the_repairs_of_payment_and_refund_leftovers_look_back_one_day_only(paid_order_factory, queued_deliveries):
    from datetime import timedelta

    from django.utils import timezone

    from fulfillment.services.reconciliation import REPAIR_WINDOW
    from orders.models import Order
    from orders.services import order_refund

    # Paid without units (the leftover of a crash at payment time), recently and long ago.
    recent, old = paid_order_factory(), paid_order_factory()
    Delivery.objects.filter(order__in=[recent, old]).delete()
    Order.objects.filter(pk=recent.pk).update(paid_at=timezone.now() - timedelta(hours=1))
    Order.objects.filter(pk=old.pk).update(paid_at=timezone.now() - REPAIR_WINDOW - timedelta(hours=1))
    # Refunded with a unit left WAITING (a failure that raced the refund), recently and long ago.
    refunded_recently, refunded_long_ago = paid_order_factory(), paid_order_factory()
    for order in (refunded_recently, refunded_long_ago):
        order_refund(order_id=order.pk)
        Delivery.objects.filter(order=order).update(status=DeliveryStatus.WAITING)
    Order.objects.filter(pk=refunded_long_ago.pk).update(
        refunded_at=timezone.now() - REPAIR_WINDOW - timedelta(hours=1)
    )

    queued = paid_orders_reconcile()

    assert recent.pk in queued and Delivery.objects.filter(order=recent).exists()
    assert old.pk not in queued and not Delivery.objects.filter(order=old).exists()
    assert set(Delivery.objects.filter(order=refunded_recently).values_list("status", flat=True)) == {"cancelled"}
    assert set(Delivery.objects.filter(order=refunded_long_ago).values_list("status", flat=True)) == {"waiting"}
