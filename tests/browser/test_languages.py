"""Each way out, in a real browser, in Russian and in English: a staff member switches the admin's
language in its header, finds a failed order, and refunds the unit from the "what is wrong" box
(the amount on the button, a confirmation, the outcome); a customer whose payment was declined
reads that nothing was charged and pays again; the phone status page in Russian. Screenshots of
the Russian admin and the phone page go to var/screenshots/ (and, refreshed, to docs/images/)."""

from __future__ import annotations

import pytest
import requests

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # the `browser` fixture skips, or fails under REQUIRE_SERVICES=1, saying why
    By = expected_conditions = Select = WebDriverWait = None

from fulfillment.models import Delivery, DeliveryStatus
from orders.models import Order, Product, Refund
from tests.browser.conftest import admin_log_in, horizontal_overflow, screenshot
from tests.browser.test_staff_console import PASSWORD, failed_order, staff_user  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WAIT = 30
WORDS = {
    "ru": {
        "dashboard": "Сначала проблемы",
        "failed": "Оплачен — 1 единица с ошибкой",
        "wrong": "Что не так",
        "refund_button": "Вернуть деньги за 1 единицу (400,00 ₽)…",
        "confirm": "Вернуть 400,00 ₽",
        "sent": "отправляется",
        "declined": "С вашей карты ничего не списано",
        "pay_again": "Оплатить ещё раз",
        "paid": "Выдан",
    },
    "en": {
        "dashboard": "Problems first",
        "failed": "Paid — 1 unit failed",
        "wrong": "What is wrong",
        "refund_button": "Refund this unit (400.00 ₽)…",
        "confirm": "Refund 400.00 ₽",
        "sent": "is being sent",
        "declined": "Nothing was charged to your card",
        "pay_again": "Pay again",
        "paid": "Delivered",
    },
}


def wait_for(browser, css: str):
    return WebDriverWait(browser, WAIT).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


@pytest.mark.parametrize("language", ["ru", "en"])
def test_staff_refund_a_failed_unit_from_the_order_page_in_their_language(
    browser,
    live_server,
    django_user_model,
    failed_order,  # noqa: F811 - the fixture imported above
    language,
):
    django_user_model.objects.create_superuser(username="boss", password=PASSWORD, email="boss@example.com")
    # The switch in the header: the whole admin follows, Django's words and ours.
    admin_log_in(browser, live_server, "boss", password=PASSWORD, language=language)
    words = WORDS[language]
    assert words["dashboard"] in browser.page_source
    assert horizontal_overflow(browser) <= 0
    screenshot(browser, f"admin-dashboard-{language}")

    browser.find_element(By.ID, "problem-failed_units").click()
    wait_for(browser, "#result_list")
    (row,) = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert failed_order.public_id in row.text and words["failed"] in row.text
    row.find_element(By.CSS_SELECTOR, "th.field-number a").click()
    wait_for(browser, "#order-wrong")

    assert failed_order.public_id in browser.find_element(By.TAG_NAME, "h1").text
    box = browser.find_element(By.ID, "order-wrong")
    assert words["wrong"] in box.text and "Wrong destination number" in box.text
    button = box.find_element(By.CSS_SELECTOR, "input.refund-button")
    assert button.get_attribute("value") == words["refund_button"]
    assert horizontal_overflow(browser) <= 0
    screenshot(browser, f"admin-order-{language}")

    button.click()
    confirm = wait_for(browser, "input[name=confirm]")
    assert confirm.get_attribute("value") == words["confirm"]
    assert not Refund.objects.exists()  # nothing happens before confirming
    screenshot(browser, f"admin-refund-confirm-{language}")
    confirm.click()

    wait_for(browser, ".messagelist")
    assert words["sent"] in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    refund = Refund.objects.get(order=failed_order)
    assert refund.amount_kopecks == 40000
    assert Delivery.objects.get(order=failed_order, refund=refund).status == DeliveryStatus.REFUNDING


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_declined_customer_pays_again_in_their_language(browser, live_server, settings, language):
    browser.set_window_size(390, 844)  # a phone
    settings.DEBUG = True
    settings.TBANK_SANDBOX = True
    settings.PUBLIC_BASE_URL = live_server.url
    settings.STATUS_PAGE_REFRESH_SECONDS = 1
    product = Product.objects.create(name="PUBG Mobile: 325 UC", sku="pubg325", price_kopecks=110000)
    # The order API's per-address throttle counts in the process-wide cache: earlier tests' orders
    # from 127.0.0.1 must not decide this one.
    from django.core.cache import cache

    cache.clear()
    created = requests.post(
        f"{live_server.url}/api/orders",
        json={"email": "buyer@example.com", "items": [{"product": product.pk, "quantity": 1, "recipient": "51234"}]},
        headers={"Accept-Language": language},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    answer = created.json()
    words = WORDS[language]

    browser.get(answer["payment_url"])
    browser.find_element(By.ID, "decline").click()
    WebDriverWait(browser, WAIT).until(lambda b: b.find_elements(By.ID, "declined"))
    browser.get(f"{answer['status_url'].split('&lang=')[0]}&lang={language}")
    declined = browser.find_element(By.ID, "declined")
    assert words["declined"] in declined.text
    assert not browser.find_elements(By.CSS_SELECTOR, ".unit-status")  # no "Waiting" next to a declined payment
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(browser, f"customer-declined-{language}")

    pay_again = browser.find_element(By.ID, "pay-again")
    assert pay_again.text == words["pay_again"]
    pay_again.click()
    WebDriverWait(browser, WAIT).until(lambda b: "/sandbox/tbank/pay/" in b.current_url)
    assert browser.current_url != answer["payment_url"]  # a new payment link for the same order
    browser.find_element(By.ID, "pay").click()
    WebDriverWait(browser, WAIT).until(lambda b: b.find_elements(By.CSS_SELECTOR, "code.code"))
    assert Order.objects.get(public_id=answer["id"]).status == "fulfilled"
    browser.get(f"{answer['status_url'].split('&lang=')[0]}&lang={language}")
    assert browser.find_element(By.ID, "order-status").text == words["paid"]
    if language == "ru":
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "1 100,00 ₽" in page and "МСК" in page and "Цена за единицу" in page
        screenshot(browser, "customer-phone-ru")


PRICE_WORDS = {
    "ru": {
        "problem": "Единицы, ждущие решения о цене",
        "wrong": "1 единица ждёт решения о цене",
        "held": "задержана: поставщик теперь просит 23 000",
        "choose": "Выбрать единицы для покупки по новой цене поставщика…",
        "action": "Купить по новой цене поставщика",
        "bought": "1 единица будет куплена по новой цене поставщика сейчас.",
    },
    "en": {
        "problem": "Units waiting for a price decision",
        "wrong": "1 unit waits for a price decision",
        "held": "held: supplier now asks 23,000",
        "choose": "Choose the units to buy at the supplier's new price…",
        "action": "Buy at the supplier's new price",
        "bought": "1 unit will be bought at the supplier's new price now.",
    },
}


@pytest.mark.parametrize("language", ["ru", "en"])
def test_staff_buy_a_unit_held_by_a_supplier_price_rise_in_their_language(
    browser, live_server, django_user_model, refused_for_price, language
):
    from orders.services.pricing import products_resume_repriced

    order, product = refused_for_price
    Product.objects.filter(pk=product.pk).update(max_provider_price=24000)  # the sync repriced it
    assert products_resume_repriced(provider="digiflazz").units_held == 1
    django_user_model.objects.create_superuser(username="boss", password=PASSWORD, email="boss@example.com")
    admin_log_in(browser, live_server, "boss", password=PASSWORD, language=language)
    words = PRICE_WORDS[language]

    assert words["problem"] in browser.find_element(By.ID, "problem-price_decisions").text
    browser.get(f"{live_server.url}/admin/orders/order/{order.pk}/change/")
    box = wait_for(browser, "#order-wrong")
    assert words["wrong"] in box.text
    assert words["held"] in browser.find_element(By.ID, "order-units").text
    assert horizontal_overflow(browser) <= 0, "the units table with its SKU and cost columns fits"
    screenshot(browser, f"admin-order-price-decision-{language}")

    box.find_element(By.LINK_TEXT, words["choose"]).click()
    wait_for(browser, "#result_list")
    (row,) = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert "ml86" in row.text
    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_visible_text(words["action"])
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()

    assert words["bought"] in wait_for(browser, ".messagelist").text
    assert Delivery.objects.get(order=order).max_price_override == 23000
