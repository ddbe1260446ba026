"""The dashboard opens with problems (counts linking to the filtered lists), the halt banner shows
on every admin page, and the Needs attention filter finds the orders behind each problem."""

from __future__ import annotations

import pytest
from django.urls import reverse

from fulfillment.models import ProviderAccount
from fulfillment.services import provider_halt, provider_resume
from fulfillment_site.console.problems import Problem, problems_count, register
from orders.models import NotificationVerdict, PaymentNotification
from tests.conftest import notification

INDEX = reverse("admin:index")
ORDERS = reverse("admin:orders_order_changelist")


def counts(client) -> dict[str, int]:
    response = client.get(INDEX)
    assert response.status_code == 200
    return {problem.key: problem.count for problem in response.context["problems"]}


def test_a_quiet_shop_says_nothing_needs_attention(admin_client, paid_order_factory):
    paid_order_factory()  # paid just now: delivering, not a problem
    response = admin_client.get(INDEX)
    assert set(counts(admin_client).values()) == {0}
    assert "Nothing needs attention right now." in response.content.decode()


def test_each_problem_is_counted_and_links_to_its_list(
    admin_client, failed_order, old_paid_order, order_factory, post_notification, settings
):
    # A partial refund made in the bank's portal that no units add up to: a person must see which
    # units it could cover (the notification) and decide (the order is flagged).
    paid = order_factory(price=10000)
    post_notification(notification(paid, PaymentId=1))
    post_notification(notification(paid, status="PARTIAL_REFUNDED", PaymentId=1, Amount=5000))
    provider_halt(provider="digiflazz", code="41", reason="Signature rejected: check DIGIFLAZZ_API_KEY.")
    settings.PROVIDER_BALANCE_ALERT = 500_000
    ProviderAccount.objects.create(provider="digiflazz", balance=120_000)

    response = admin_client.get(INDEX)

    assert counts(admin_client) == {
        "failed_units": 1,
        "paid_too_long": 1,
        "notifications_to_review": 1,
        "provider_halts": 1,
        "low_balance": 1,
        "refunds_failed": 0,
        "refunds_waiting": 0,
        "orders_flagged": 1,
        "product_pauses": 0,
        "products_repricing": 0,
        "price_decisions": 0,
        "exchange_rate_stale": 0,  # no price rules: prices are not made from a rate
        "below_margin": 0,
    }
    page = response.content.decode()
    assert f'href="{ORDERS}?attention=failed_units"' in page
    assert f'href="{ORDERS}?attention=paid_too_long"' in page
    assert f'href="{reverse("admin:orders_paymentnotification_changelist")}?review=pending"' in page
    assert f'href="{reverse("admin:fulfillment_providerhalt_changelist")}"' in page
    assert "120,000" in page and "500,000" in page  # the balance against its threshold


def test_refunds_refused_or_stuck_are_counted_and_link_to_the_refunds(admin_client, paid_order_factory, settings):
    from datetime import timedelta

    from django.utils import timezone

    from orders.models import Payment, Refund, RefundReason
    from orders.refund_state import RefundState

    order = paid_order_factory(price=10000)
    payment = Payment.objects.create(order=order, payment_id="8742591", amount_kopecks=10000)

    def refund(state: str, age_minutes: int) -> Refund:
        made = Refund.objects.create(
            order=order, payment=payment, amount_kopecks=100, reason=RefundReason.STAFF, decided_by="x", state=state
        )
        Refund.objects.filter(pk=made.pk).update(created_at=timezone.now() - timedelta(minutes=age_minutes))
        return made

    refund(RefundState.FAILED, 1)
    refund(RefundState.CHECKING, settings.ORDER_PAID_TOO_LONG_MINUTES + 5)  # stuck
    refund(RefundState.DECIDED, 1)  # just decided: a worker is on it
    refund(RefundState.SUCCEEDED, 500)

    found = counts(admin_client)
    assert (found["refunds_failed"], found["refunds_waiting"]) == (1, 1)
    page = admin_client.get(INDEX).content.decode()
    assert f'href="{reverse("admin:orders_refund_changelist")}?needs_staff=failed"' in page


def test_a_failed_unit_of_a_refunded_order_needs_nobody(admin_client, failed_order):
    from orders.services import order_refund

    order_refund(order_id=failed_order.pk)
    assert counts(admin_client)["failed_units"] == 0


def test_a_reviewed_notification_leaves_the_panel(admin_client, order_factory, post_notification, django_user_model):
    from orders.services import payment_notification_mark_reviewed

    order = order_factory()
    post_notification(notification(order, Status="PARTIAL_REFUNDED"))
    record = PaymentNotification.objects.get(verdict=NotificationVerdict.NEEDS_REVIEW)
    assert counts(admin_client)["notifications_to_review"] == 1

    payment_notification_mark_reviewed(notification_id=record.pk, user_id=None)

    assert counts(admin_client)["notifications_to_review"] == 0


@pytest.mark.parametrize(
    "page",
    [
        "admin:index",
        "admin:orders_order_changelist",
        "admin:orders_paymentnotification_changelist",
        "admin:fulfillment_delivery_changelist",
        "admin:fulfillment_deliveryattempt_changelist",
        "admin:orders_product_changelist",
    ],
)
def test_the_halt_banner_is_on_every_admin_page_while_a_provider_is_halted(admin_client, page):
    url = reverse(page)
    assert "are halted" not in admin_client.get(url).content.decode()

    provider_halt(provider="digiflazz", code="41", reason="Signature rejected: check DIGIFLAZZ_API_KEY.")
    shown = admin_client.get(url).content.decode()
    assert "Deliveries through digiflazz are halted" in shown
    assert "Signature rejected: check DIGIFLAZZ_API_KEY." in shown

    provider_resume(provider="digiflazz")
    assert "are halted" not in admin_client.get(url).content.decode()


def test_the_banner_is_cached_briefly_and_dropped_when_a_halt_changes(admin_client, settings):
    settings.CONSOLE_HALT_CACHE_SECONDS = 60
    admin_client.get(INDEX)  # caches "no halt"
    provider_halt(provider="mock", code="41", reason="Bad key.")  # this process saw it: the cache is dropped
    assert "Deliveries through mock are halted" in admin_client.get(INDEX).content.decode()


def test_the_mock_ledger_is_not_on_the_menu_but_still_reachable(admin_client):
    page = admin_client.get(INDEX).content.decode()
    assert "Mock ledger entries" not in page
    assert reverse("admin:fulfillment_mockledgerentry_changelist") not in page
    assert admin_client.get(reverse("admin:fulfillment_mockledgerentry_changelist")).status_code == 200


def test_staff_see_only_the_lists_they_may_open(staff_client_factory):
    client = staff_client_factory("orders.view_order")
    page = client.get(INDEX).content.decode()
    assert f'href="{ORDERS}"' in page
    assert reverse("admin:fulfillment_deliveryattempt_changelist") not in page


@pytest.mark.parametrize(
    ("attention", "expected"),
    [
        ("failed_units", {"failed"}),
        ("paid_too_long", {"old"}),
        ("to_review", {"reviewed"}),
        ("any", {"failed", "old", "reviewed"}),
        (None, {"failed", "old", "reviewed", "fine"}),
    ],
)
def test_needs_attention_filter(
    admin_client,
    failed_order,
    old_paid_order,
    paid_order_factory,
    order_factory,
    post_notification,
    attention,
    expected,
):
    to_review = order_factory()
    post_notification(notification(to_review, Status="PARTIAL_REFUNDED"))
    fine = paid_order_factory()
    names = {failed_order.pk: "failed", old_paid_order.pk: "old", to_review.pk: "reviewed", fine.pk: "fine"}

    response = admin_client.get(ORDERS, {"attention": attention} if attention else {})

    assert response.status_code == 200
    assert {names[order.pk] for order in response.context["cl"].result_list} == expected


def test_a_new_kind_of_problem_is_one_registration(admin_client, monkeypatch):
    from fulfillment_site.console import problems

    monkeypatch.setattr(problems, "PROBLEMS", list(problems.PROBLEMS))
    register(Problem(key="units_contradicted", title="Units contradicted", count=lambda: 2, url=lambda: "/admin/x/"))

    assert [problem.key for problem in problems_count()][-1] == "units_contradicted"
    page = admin_client.get(INDEX).content.decode()
    assert 'id="problem-units_contradicted"' in page and "Units contradicted" in page


def test_flagged_orders_and_paused_products_are_counted_and_linked(admin_client, paid_order_factory):
    from fulfillment.models import FlagKind, OrderFlag, ProductPause

    order = paid_order_factory()
    OrderFlag.objects.create(order=order, kind=FlagKind.CALLBACK_CONTRADICTS, reason="Gagal rc 74 after Sukses.")
    OrderFlag.objects.create(order=order, kind=FlagKind.NOTHING_TO_DELIVER, reason="old", resolved_by="alice")
    OrderFlag.objects.filter(resolved_by="alice").update(resolved_at="2026-01-01T00:00:00Z")
    ProductPause.objects.create(provider="digiflazz", sku="xl10", code="68", reason="Out of stock.")

    found = counts(admin_client)
    assert (found["orders_flagged"], found["product_pauses"]) == (1, 1)
    page = admin_client.get(INDEX).content.decode()
    assert f'href="{ORDERS}?attention=flagged"' in page
    assert f'href="{reverse("admin:fulfillment_productpause_changelist")}"' in page
    flagged = admin_client.get(f"{ORDERS}?attention=flagged")
    assert [row.pk for row in flagged.context["cl"].result_list] == [order.pk]
    order_page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert "Gagal rc 74 after Sukses." in order_page


def test_the_halt_tile_says_what_a_deposit_halt_needs(admin_client, digiflazz_settings, product_factory):
    from fulfillment.models import Delivery
    from fulfillment.providers.base import FailureScope
    from fulfillment.services.funding import provider_release_by_deposit
    from orders.services import ItemSpec, order_create, order_mark_paid

    product = product_factory(sku="xld10", provider_price=10_000)
    order = order_create(items=[ItemSpec(product=product, recipient="0811", quantity=3)])
    order_mark_paid(order_id=order.pk, payment_id="1")
    provider_halt(provider="digiflazz", code="44", reason="Deposit too low", scope=FailureScope.SHOP, balance=0)
    ProviderAccount.objects.create(provider="digiflazz", balance=12_000)
    provider_release_by_deposit(provider="digiflazz", balance=12_000, source="the account check")

    page = admin_client.get(INDEX).content.decode()
    assert "digiflazz: deposit seen 12,000; 2 held unit(s) cost 20,000; top up at least 18,000 more." in page

    held = Delivery.objects.filter(order=order, released_at__isnull=True).first()
    order_page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert "does not cover this unit" in order_page and held.last_message.startswith("Held:")


def test_a_halt_that_is_not_for_the_deposit_shows_no_deposit_line(admin_client, digiflazz_settings):
    provider_halt(provider="digiflazz", code="41", reason="Signature rejected")
    page = admin_client.get(INDEX).content.decode()
    assert "deposit-shortfall" not in page


def test_the_deposit_line_costs_the_same_queries_however_many_units_wait(admin_client, paid_order_factory, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from fulfillment.providers.base import FailureScope
    from fulfillment.providers.mock import DEPOSIT_CODE

    settings.FULFILLMENT_PROVIDER = "mock"
    paid_order_factory(payment_id="1")
    provider_halt(provider="mock", code=DEPOSIT_CODE, reason="Mock deposit", scope=FailureScope.SHOP, balance=0)
    admin_client.get(INDEX)  # the first request of a process fills caches

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            page = admin_client.get(INDEX).content.decode()
        assert 'id="deposit-shortfall-mock"' in page
        return len(captured)

    few = queries()
    for n in range(2, 8):
        paid_order_factory(quantities=(2,), payment_id=str(n))
    assert queries() == few
