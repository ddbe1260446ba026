"""The staff console in a real browser: a staff member finds a failed order from the dashboard,
retries it with the button on the order page, and sees the outcome; without the permission
there is no button. Screenshots land in var/screenshots/ for people to look at."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the `browser` fixture skips, or fails under REQUIRE_SERVICES=1, saying why
    By = expected_conditions = WebDriverWait = None

from fulfillment.models import Delivery, DeliveryStatus, ProviderAccount
from fulfillment.providers.base import FailureScope, FulfillmentResult
from fulfillment.services import fulfill_order
from orders.models import Order, Product
from orders.state import OrderStatus
from tests.browser.conftest import admin_log_in, horizontal_overflow, screenshot
from tests.conftest import notification

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "console-test-password"
STAFF_PERMISSIONS = (
    "orders.view_order",
    "orders.retry_fulfillment",
    "orders.view_paymentnotification",
    "orders.view_product",
    "fulfillment.view_delivery",
    "fulfillment.view_deliveryattempt",
    "fulfillment.view_providerhalt",
    "fulfillment.view_provideraccount",
)


@pytest.fixture
def staff_user(django_user_model):
    def make(username: str, *perms: str):
        user = django_user_model.objects.create_user(username=username, password=PASSWORD, is_staff=True)
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        return user

    return make


@pytest.fixture
def failed_order(order_factory, post_notification, scripted_provider):
    """An order of 800.00 ₽ paid through the webhook: one unit delivered, the other FAILED for good
    (the provider refused the number); the provider delivers it on the next purchase."""
    from fulfillment.tasks import deliver_order

    order = order_factory(quantities=(1, 1), price=40000, recipient="087800001232", email="anna@example.com")
    first, second = order.items.select_related("product")
    Product.objects.filter(pk=first.product_id).update(name="Mobile credit 400 ₽")
    Product.objects.filter(pk=second.product_id).update(name="Game voucher 400 ₽")
    refused = FulfillmentResult.failed(
        scope=FailureScope.PERMANENT, code="02", message="Wrong destination number: the operator refused it."
    )
    scripted_provider.script(second.product.sku, refused)
    # Transactions commit here, so paying would deliver at once (eager Celery): deliver by hand.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(deliver_order, "delay", lambda order_id: None)
        assert post_notification(notification(order, PaymentId=5512093)).status_code == 200
    fulfill_order(order.pk)
    assert Delivery.objects.filter(order=order, status=DeliveryStatus.FAILED).count() == 1
    return order


def log_in(browser, live_server, username: str) -> None:
    admin_log_in(browser, live_server, username, password=PASSWORD)


def text_of(browser, css: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, css).text


def test_staff_find_a_failed_order_on_the_dashboard_and_retry_it(
    browser, live_server, staff_user, failed_order, settings
):
    settings.PROVIDER_BALANCE_ALERT = 500_000
    ProviderAccount.objects.create(provider="digiflazz", balance=1_250_000, balance_checked_at=timezone.now())
    staff_user("ops", *STAFF_PERMISSIONS)
    log_in(browser, live_server, "ops")

    card = browser.find_element(By.ID, "problem-failed_units")
    assert card.find_element(By.CLASS_NAME, "count").text == "1"
    assert "Units failed" in card.text
    assert horizontal_overflow(browser) <= 0
    screenshot(browser, "admin-dashboard")

    card.click()
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "result_list")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1
    assert "Paid — 1 unit failed" in rows[0].text
    assert "800.00 ₽" in rows[0].text
    assert horizontal_overflow(browser) <= 0
    screenshot(browser, "admin-order-list")

    assert failed_order.public_id in rows[0].text  # the number customers see
    rows[0].find_element(By.CSS_SELECTOR, "th.field-number a").click()
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "order-units")))
    assert "Wrong destination number" in text_of(browser, "#order-wrong")
    units = text_of(browser, "#order-units")
    delivered = Delivery.objects.get(order=failed_order, status=DeliveryStatus.DELIVERED)
    assert delivered.serial in units and "087800001232" in units and "Game voucher 400 ₽" in units
    assert "CONFIRMED" in text_of(browser, "#order-timeline")
    assert horizontal_overflow(browser) <= 0
    screenshot(browser, "admin-order")

    browser.find_element(By.ID, "retry-button").click()
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "confirm-retry")))
    assert Delivery.objects.get(order=failed_order, status=DeliveryStatus.FAILED)  # nothing happens before confirming
    screenshot(browser, "admin-order-retry-confirm")
    browser.find_element(By.ID, "confirm-retry").click()

    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".messagelist")))
    assert f"Order {failed_order.public_id}: Retry queued" in text_of(browser, ".messagelist")
    # Celery runs eagerly in tests: the Mock delivered the unit during the request.
    assert text_of(browser, "#order-status") == "Fulfilled"
    assert Order.objects.get(pk=failed_order.pk).status == OrderStatus.FULFILLED
    timeline = text_of(browser, "#order-timeline")
    assert "Retried fulfillment" in timeline and "ops" in timeline
    screenshot(browser, "admin-order-after-retry")


def test_staff_without_the_permission_see_no_retry_button(browser, live_server, staff_user, failed_order):
    staff_user("viewer", "orders.view_order")
    log_in(browser, live_server, "viewer")

    browser.get(f"{live_server.url}/admin/orders/order/{failed_order.pk}/change/")
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "order-units")))
    assert "failed" in text_of(browser, "#order-wrong")
    assert browser.find_elements(By.ID, "retry-button") == []

    browser.get(f"{live_server.url}/admin/orders/order/{failed_order.pk}/retry/")
    assert "403" in browser.title or "Forbidden" in browser.page_source
    assert Delivery.objects.filter(order=failed_order, status=DeliveryStatus.FAILED).count() == 1


@pytest.mark.parametrize(
    "page",
    [
        "orders/order",
        "orders/paymentnotification",
        "fulfillment/delivery",
        "fulfillment/deliveryattempt",
        "fulfillment/providerhalt",
        "orders/product",
    ],
)
def test_list_pages_fit_a_1366_px_screen(browser, live_server, staff_user, failed_order, page):
    from fulfillment.services import provider_halt

    provider_halt(provider="digiflazz", code="41", reason="Signature rejected: check DIGIFLAZZ_API_KEY.")
    staff_user("ops", *STAFF_PERMISSIONS)
    log_in(browser, live_server, "ops")

    browser.get(f"{live_server.url}/admin/{page}/")
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "changelist")))
    assert "Deliveries through digiflazz are halted" in text_of(browser, ".console-banner")
    screenshot(browser, "admin-list-" + page.replace("/", "-"))
    assert horizontal_overflow(browser) <= 0


def test_the_margin_report_draws_its_chart_from_our_static_files(browser, live_server, staff_user, order_factory):
    from datetime import timedelta
    from decimal import Decimal

    from orders.models import OrderItem
    from orders.services import order_mark_paid

    order = order_factory(quantities=(2,), price=11000)
    OrderItem.objects.filter(order=order).update(cost_kopecks=10000, priced_rate=Decimal("0.005"))
    order_mark_paid(order_id=order.pk, payment_id="7400000001")
    Delivery.objects.filter(order=order).update(
        status=DeliveryStatus.DELIVERED, delivered_at=timezone.now() - timedelta(minutes=5)
    )
    staff_user("ana", "orders.view_order")
    log_in(browser, live_server, "ana")

    browser.get(f"{live_server.url}/admin/margin/")

    WebDriverWait(browser, 10).until(lambda driver: driver.execute_script("return window.marginChartReady === true"))
    # Chart.js drew on the canvas: it is sized and holds non-blank pixels.
    drawn = browser.execute_script(
        "var c = document.getElementById('margin-chart');"
        "var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "for (var i = 3; i < d.length; i += 4) { if (d[i] > 0) { return true; } } return false;"
    )
    assert drawn
    assert "220" in browser.find_element(By.ID, "margin-total").text  # revenue 220 ₽ for 2 units
    assert horizontal_overflow(browser) == 0
    screenshot(browser, "margin-report")
