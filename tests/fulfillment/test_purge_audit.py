"""`manage.py purge_audit`: old audit rows that no money question needs go; the rest stays
(the rules are in orders/services/retention.py and fulfillment/services/retention.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from fulfillment.models import AttemptKind, Delivery, DeliveryAttempt, DeliveryStatus
from fulfillment.providers.base import FailureScope, FulfillmentResult
from fulfillment.services import fulfill_order
from orders.models import NotificationVerdict, Order, PaymentNotification
from orders.state import OrderStatus, order_transition
from tests.conftest import WEBHOOK_URL, notification

pytestmark = pytest.mark.django_db

OLD = timedelta(days=200)


def _post(client, body) -> None:
    body = body if isinstance(body, bytes) else json.dumps(body)
    client.post(WEBHOOK_URL, data=body, content_type="application/json")


def _age_everything() -> None:
    then = timezone.now() - OLD
    PaymentNotification.objects.update(received_at=then)
    DeliveryAttempt.objects.update(started_at=then, finished_at=then)


def _purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_audit", *args, stdout=out)
    return out.getvalue()


def _run(order: Order, times: int) -> None:
    """Run the order's delivery `times` times, each with its units due."""
    for _ in range(times):
        Delivery.objects.filter(order=order).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
        fulfill_order(order.pk)


@pytest.fixture
def notifications(client, order_factory, paid_order_factory):
    """One old notification of each kind; returns {name: PaymentNotification}."""
    made = {}

    def last(name):
        made[name] = PaymentNotification.objects.latest("id")

    _post(client, b"\x01junk" * 4096)
    last("junk")
    forged = notification(order_factory())
    forged["Token"] = "0" * 64
    _post(client, forged)
    last("forged")
    _post(client, notification(Order(pk=999_999, amount_kopecks=1)))
    last("unknown order")

    fulfilled = order_factory()
    _post(client, notification(fulfilled, status="AUTHORIZED"))
    last("authorized, order fulfilled")
    _post(client, notification(fulfilled))
    last("applied")
    _post(client, notification(fulfilled))
    last("duplicate confirmed")
    order_transition(order_id=fulfilled.pk, target=OrderStatus.FULFILLED)
    _post(client, notification(fulfilled, status="REJECTED"))
    last("rejected, order fulfilled")
    assert made["rejected, order fulfilled"].verdict == NotificationVerdict.IGNORED

    open_order = order_factory()
    _post(client, notification(open_order, status="AUTHORIZED"))
    last("authorized, order new")

    cancelled = order_factory()
    _post(client, notification(cancelled, status="REFUNDED"))
    last("refund before capture")
    _post(client, notification(cancelled, status="REFUNDED"))
    last("duplicate refund")
    _post(client, notification(cancelled, status="REJECTED"))
    last("rejected, order cancelled")
    assert made["rejected, order cancelled"].verdict == NotificationVerdict.DUPLICATE
    _age_everything()
    _post(client, b"recent junk")
    last("recent junk")
    return made


DELETED = {"junk", "forged", "authorized, order fulfilled", "rejected, order fulfilled", "rejected, order cancelled"}


def test_purge_deletes_what_no_money_question_needs_and_keeps_the_rest(notifications):
    output = _purge("--older-than", "180d")

    remaining = set(PaymentNotification.objects.values_list("pk", flat=True))
    for name, record in notifications.items():
        assert (record.pk in remaining) == (name not in DELETED), name
    assert "payment notifications: deleted 5; kept 6 older rows" in output
    assert "Summary:" in output


def test_a_late_confirmed_still_finds_a_purged_period_refund(notifications, client, queued_deliveries):
    # The REFUNDED before the capture is kept, so a CONFIRMED retried after the purge is still
    # recognised as money that came and went: nothing is delivered.
    _purge("--older-than", "180d")
    cancelled = notifications["refund before capture"].order

    _post(client, notification(cancelled))

    assert Order.objects.get(pk=cancelled.pk).status == OrderStatus.REFUNDED
    assert queued_deliveries == []


def test_dry_run_counts_and_deletes_nothing(notifications):
    before = PaymentNotification.objects.count()
    output = _purge("--older-than", "180d", "--dry-run")
    assert PaymentNotification.objects.count() == before
    assert "payment notifications: would delete 5; kept 6" in output
    assert "Nothing was deleted" in output


def test_rows_younger_than_the_cutoff_stay(notifications):
    _purge("--older-than", "201d")
    assert PaymentNotification.objects.count() == len(notifications)


def test_progress_is_shown_per_batch(notifications):
    output = _purge("--older-than", "4800h", "--batch-size", "3")
    assert "payment notifications: 3 deleted so far" in output
    assert "payment notifications: 5 deleted so far" in output
    assert PaymentNotification.objects.filter(pk__in=[notifications[name].pk for name in DELETED]).count() == 0


# --- delivery attempts ---------------------------------------------------------------------------


def _pending(**extra):
    return FulfillmentResult.pending(code="03", message="Pending", **extra)


def test_pending_checks_of_settled_units_on_final_orders_go_everything_else_stays(
    scripted_provider, paid_order_factory
):
    delivered = paid_order_factory()
    sku = delivered.items.get().product.sku
    scripted_provider.script(sku, _pending(), _pending(), _pending(), FulfillmentResult.delivered(serial="S1"))
    _run(delivered, 4)
    assert Order.objects.get(pk=delivered.pk).status == OrderStatus.FULFILLED

    still_pending = paid_order_factory()
    scripted_provider.script(still_pending.items.get().product.sku, *[_pending()] * 3)
    _run(still_pending, 3)

    failed = paid_order_factory()
    scripted_provider.script(
        failed.items.get().product.sku,
        _pending(),
        _pending(),
        FulfillmentResult.failed(scope=FailureScope.PERMANENT, code="54", message="Wrong number"),
    )
    _run(failed, 3)
    assert Delivery.objects.get(order=failed).status == DeliveryStatus.FAILED
    _age_everything()
    kinds = lambda order: list(  # noqa: E731
        DeliveryAttempt.objects.filter(order=order).order_by("id").values_list("kind", "outcome")
    )
    before = {order.pk: kinds(order) for order in (delivered, still_pending, failed)}
    assert before[delivered.pk] == [
        (AttemptKind.PURCHASE, "pending"),
        (AttemptKind.CHECK, "pending"),
        (AttemptKind.CHECK, "pending"),
        (AttemptKind.CHECK, "delivered"),
    ]

    output = _purge("--older-than", "180d")

    # The purchase and the answer that settled the unit stay; the "still pending" checks go.
    assert kinds(delivered) == [(AttemptKind.PURCHASE, "pending"), (AttemptKind.CHECK, "delivered")]
    assert kinds(still_pending) == before[still_pending.pk]  # the unit is open, the order PAID
    assert kinds(failed) == before[failed.pk]  # staff decide on a retry from these
    kept = len(before[still_pending.pk]) + len(before[failed.pk]) + 2
    assert f"delivery attempts: deleted 2; kept {kept} older rows" in output


@pytest.mark.parametrize("value", ["180", "6m", "0h", "0d", "abc", "-5d", "999999d", ""])
def test_bad_durations_are_refused_with_the_format(db, value):
    with pytest.raises(CommandError, match=r"--older-than"):
        _purge("--older-than", value)


@pytest.mark.parametrize(("value", "hours"), [("180d", 180 * 24), ("30d", 30 * 24), ("12h", 12), ("1H", 1)])
def test_durations_in_days_and_hours(value, hours):
    from fulfillment.management.commands.purge_audit import parse_age

    assert parse_age(value) == timedelta(hours=hours)
