"""The customer's pages in headless Chromium: the status page (codes, copy button, refresh that
stops when final, Russian and English) and the sandbox pay page (Pay completes the purchase)."""

from __future__ import annotations

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from fulfillment.models import Delivery, DeliveryStatus
from orders.models import Order, Product
from orders.services import order_mark_fulfilled
from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WAIT = 30


def test_status_page_shows_codes_to_copy_and_stops_refreshing_when_final(
    browser, live_server, paid_order_factory, settings, queued_deliveries
):
    browser.set_window_size(390, 844)  # a phone
    settings.STATUS_PAGE_REFRESH_SECONDS = 1
    order = paid_order_factory(quantities=(2,), email="buyer@example.com")
    browser.get(f"{live_server.url}/orders/{order.public_id}/?token={order.access_token}&lang=en")
    assert browser.find_element(By.ID, "order-status").text == "Paid, delivering"
    assert browser.find_elements(By.ID, "auto-refresh")
    screenshot(browser, "customer-delivering-en")

    for n, unit in enumerate(Delivery.objects.filter(order=order).order_by("unit_index")):
        Delivery.objects.filter(pk=unit.pk).update(status=DeliveryStatus.DELIVERED, serial=f"VOUCHER-{n}-7F3K")
    order_mark_fulfilled(order_id=order.pk)

    WebDriverWait(browser, WAIT).until(lambda b: b.find_element(By.ID, "order-status").text == "Delivered")
    assert not browser.find_elements(By.ID, "auto-refresh")  # final: no more reloads
    codes = [el.text for el in browser.find_elements(By.CSS_SELECTOR, "code.code")]
    assert codes == ["VOUCHER-0-7F3K", "VOUCHER-1-7F3K"]
    button = browser.find_elements(By.CSS_SELECTOR, "button.copy")[0]
    button.click()
    WebDriverWait(browser, WAIT).until(lambda b: button.text == "Copied")
    assert browser.execute_script("return window.lastCopied") == "VOUCHER-0-7F3K"
    # Fits a narrow screen: nothing scrolls sideways.
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(browser, "customer-delivered-en")

    browser.get(f"{live_server.url}/orders/{order.public_id}/?token={order.access_token}&lang=ru")
    assert browser.find_element(By.ID, "order-status").text == "Выдан"
    browser.find_element(By.ID, "copy-all").click()
    WebDriverWait(browser, WAIT).until(lambda b: b.find_element(By.ID, "copy-all").text == "Скопировано")
    assert browser.execute_script("return window.lastCopied") == "VOUCHER-0-7F3K\nVOUCHER-1-7F3K"
    screenshot(browser, "customer-delivered-ru")


def test_sandbox_pay_page_completes_the_purchase(browser, live_server, settings):
    browser.set_window_size(390, 844)  # a phone
    settings.DEBUG = True
    settings.TBANK_SANDBOX = True
    settings.PUBLIC_BASE_URL = live_server.url
    settings.STATUS_PAGE_REFRESH_SECONDS = 1
    product = Product.objects.create(name="Game top-up 86 diamonds", sku="ml86", price_kopecks=25000)
    created = requests.post(
        f"{live_server.url}/api/orders",
        json={"email": "buyer@example.com", "items": [{"product": product.pk, "quantity": 1, "recipient": "1234"}]},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    answer = created.json()

    browser.get(answer["payment_url"])
    assert "250.00" in browser.page_source
    screenshot(browser, "customer-sandbox-pay")
    browser.find_element(By.ID, "pay").click()

    # The sandbox sends the signed notification, the order is paid and (eager tasks) delivered.
    WebDriverWait(browser, WAIT).until(lambda b: b.current_url.startswith(answer["status_url"].split("?")[0]))
    WebDriverWait(browser, WAIT).until(lambda b: b.find_elements(By.CSS_SELECTOR, "code.code"))
    order = Order.objects.get(public_id=answer["id"])
    assert order.status == "fulfilled"
    serial = Delivery.objects.get(order=order).serial
    assert browser.find_element(By.CSS_SELECTOR, "code.code").text == serial
    screenshot(browser, "customer-sandbox-paid-status")
