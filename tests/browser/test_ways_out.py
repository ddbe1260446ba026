"""The order page's ways out, in a real browser, in Russian and in English: correct a refused
recipient and buy again; open a notification that needs review and mark it reviewed; stop units
held by a paused product and refund them. Each ends in the database, not only on the page."""

from __future__ import annotations

import pytest

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the `browser` fixture skips, or fails under REQUIRE_SERVICES=1, saying why
    By = expected_conditions = Select = WebDriverWait = None

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.services import product_pause
from orders.models import NotificationVerdict, PaymentNotification, Refund
from orders.services import order_mark_paid
from tests.browser.conftest import admin_log_in, horizontal_overflow, screenshot
from tests.browser.test_staff_console import PASSWORD, failed_order  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WAIT = 30
WORDS = {
    "ru": {
        "correct": "Исправить получателя…",
        "corrected": "получатель исправлен",
        "open_review": "Открыть и отметить как проверенное",
        "reviewed": "отмечено как проверенное",
        "held_button": "Остановить и вернуть деньги за 2 единицы (500,00 ₽)…",
        "confirm": "Вернуть 500,00 ₽",
        "sent": "отправляется",
    },
    "en": {
        "correct": "Correct the recipient…",
        "corrected": "recipient corrected",
        "open_review": "Open it to mark reviewed",
        "reviewed": "marked reviewed",
        "held_button": "Stop and refund these 2 units (500.00 ₽)…",
        "confirm": "Refund 500.00 ₽",
        "sent": "is being sent",
    },
}


def wait_for(browser, css: str):
    return WebDriverWait(browser, WAIT).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def open_order_page(browser, live_server, django_user_model, order, language: str) -> None:
    """Log in as a superuser, switch the admin to `language` in its header, open the order."""
    django_user_model.objects.create_superuser(username="boss", password=PASSWORD, email="boss@example.com")
    admin_log_in(browser, live_server, "boss", password=PASSWORD, language=language)
    browser.get(f"{live_server.url}/admin/orders/order/{order.pk}/change/")
    wait_for(browser, "#order-wrong")
    assert order.public_id in browser.find_element(By.TAG_NAME, "h1").text


@pytest.mark.parametrize("language", ["ru", "en"])
def test_staff_correct_a_refused_recipient_and_the_unit_is_bought_again(
    browser,
    live_server,
    django_user_model,
    failed_order,  # noqa: F811 - the fixture imported above
    language,
):
    words = WORDS[language]
    open_order_page(browser, live_server, django_user_model, failed_order, language)

    box = browser.find_element(By.ID, "order-wrong")
    box.find_element(By.LINK_TEXT, words["correct"]).click()
    field = wait_for(browser, "#recipient")
    assert field.get_attribute("value") == "087800001232"
    field.clear()
    field.send_keys("087800001230")
    screenshot(browser, f"admin-correct-recipient-{language}")
    browser.find_element(By.ID, "confirm-correct").click()

    message = wait_for(browser, ".messagelist").text
    assert words["corrected"] in message and "087800001230" in message
    item = Delivery.objects.get(order=failed_order, purchase_no=2).item
    assert item.recipient == "087800001230"
    # Bought again under a new reference, and delivered: the order has nothing wrong left.
    assert set(Delivery.objects.filter(order=failed_order).values_list("status", flat=True)) == {"delivered"}
    assert browser.find_elements(By.ID, "order-fine")
    assert horizontal_overflow(browser) <= 0


@pytest.mark.parametrize("language", ["ru", "en"])
def test_staff_open_a_notification_that_needs_review_and_mark_it_reviewed(
    browser,
    live_server,
    django_user_model,
    failed_order,  # noqa: F811 - the fixture imported above
    language,
):
    words = WORDS[language]
    record = PaymentNotification.objects.create(
        order=failed_order,
        order_ref=failed_order.public_id,
        bank_status="PARTIAL_REFUNDED",
        verdict=NotificationVerdict.NEEDS_REVIEW,
        http_status=200,
        detail="A partial refund nothing of ours explains.",
    )
    open_order_page(browser, live_server, django_user_model, failed_order, language)

    box = browser.find_element(By.ID, "order-wrong")
    assert "A partial refund nothing of ours explains." in box.text
    box.find_element(By.LINK_TEXT, words["open_review"]).click()
    wait_for(browser, "#review-button").click()

    assert words["reviewed"] in wait_for(browser, ".messagelist").text
    record.refresh_from_db()
    assert record.reviewed_at is not None and record.reviewed_by.username == "boss"
    browser.get(f"{live_server.url}/admin/orders/order/{failed_order.pk}/change/")
    assert "A partial refund nothing of ours explains." not in wait_for(browser, "#order-wrong").text


@pytest.mark.parametrize("language", ["ru", "en"])
def test_staff_stop_and_refund_units_held_by_a_paused_product(
    browser, live_server, django_user_model, order_factory, language
):
    words = WORDS[language]
    order = order_factory(quantities=(2,), price=25000)
    product_pause(provider="mock", sku=order.items.get().sku, code="out_of_stock", reason="Out of stock.")
    order_mark_paid(order_id=order.pk, payment_id="5512093")  # the delivery run finds the pause: units wait
    assert list(Delivery.objects.filter(order=order).values_list("status", flat=True)) == ["waiting", "waiting"]
    open_order_page(browser, live_server, django_user_model, order, language)

    button = browser.find_element(By.CSS_SELECTOR, "#order-wrong input.refund-held-button")
    assert button.get_attribute("value") == words["held_button"]
    screenshot(browser, f"admin-order-held-{language}")
    button.click()
    confirm = wait_for(browser, "input[name=confirm]")
    assert confirm.get_attribute("value") == words["confirm"]
    assert not Refund.objects.exists()  # nothing happens before confirming
    confirm.click()

    assert words["sent"] in wait_for(browser, ".messagelist").text
    refund = Refund.objects.get(order=order)
    assert refund.amount_kopecks == 50000
    assert list(Delivery.objects.filter(order=order).values_list("status", flat=True)) == [
        DeliveryStatus.REFUNDING,
        DeliveryStatus.REFUNDING,
    ]
