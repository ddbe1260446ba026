"""The web process as deployed: gunicorn with DEBUG off serves the admin's styles (WhiteNoise,
after `collectstatic`), and with DJANGO_HTTPS=true behind a TLS proxy it redirects plain HTTP,
sends HSTS and secure cookies, and still takes the bank's notifications; started with the
README's command (gunicorn.conf.py), customers waiting on a bank that does not answer never
hold up the bank's notifications."""

import json
import re
import threading
from pathlib import Path

import pytest
import requests

from orders.models import Order, Product
from tests.conftest import WEBHOOK_URL, notification
from tests.fakes.tbank_server import FakeTBank
from tests.integration.conftest import BIN, PROCESS_START_TIMEOUT, Web, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _collectstatic(stack) -> None:
    proc = stack.manage("collectstatic", "collectstatic", "--noinput")
    assert proc.popen.wait(timeout=180) == 0, proc.log()[-3000:]


def test_gunicorn_with_debug_off_serves_the_admin_styles(stack):
    _collectstatic(stack)
    web = stack.start_web()

    login = requests.get(web.url + "/admin/login/", timeout=10)
    stylesheets = re.findall(r'<link rel="stylesheet" href="(/static/[^"]+\.css)"', login.text)
    assert "/static/admin/css/base.css" in stylesheets, login.text[:2000]
    for href in stylesheets:
        css = requests.get(web.url + href, timeout=10)
        assert css.status_code == 200, href
        assert css.headers["Content-Type"].startswith("text/css")
        assert len(css.content) > 100
    compressed = requests.get(web.url + "/static/admin/css/base.css", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert compressed.headers.get("Content-Encoding") == "gzip"


def _start_https_web(stack) -> Web:
    # stack.start_web() waits for a 200 on plain HTTP, which the redirect never gives.
    port = free_port()
    args = [str(BIN / "gunicorn"), "fulfillment_site.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1", "--threads", "4"]
    proc = stack._spawn("web-https", args, stack.env(app="it-web-https", DJANGO_HTTPS="true"))
    web = Web(proc, f"http://127.0.0.1:{port}")

    def up() -> bool:
        try:
            return not proc.alive() or requests.get(web.url + "/admin/login/", allow_redirects=False, timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(up, timeout=PROCESS_START_TIMEOUT, what="gunicorn to answer", on_timeout=lambda: proc.log()[-2000:])
    assert proc.alive(), proc.log()[-3000:]
    return web


def test_gunicorn_behind_a_tls_proxy_with_the_https_switch(stack, order_factory):
    web = _start_https_web(stack)
    proxied = {"X-Forwarded-Proto": "https"}

    plain = requests.get(web.url + "/admin/login/", allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")

    secure = requests.get(web.url + "/admin/login/", headers=proxied, timeout=10)
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert "secure" in secure.headers["Set-Cookie"].lower()  # the CSRF cookie of the login form

    order = order_factory()
    answer = requests.post(
        web.url + WEBHOOK_URL,
        data=json.dumps(notification(order)),
        headers={"Content-Type": "application/json", **proxied},
        timeout=30,
    )
    assert (answer.status_code, answer.text) == (200, "OK")


def _start_production_web(stack, **env) -> Web:
    """`gunicorn -c gunicorn.conf.py fulfillment_site.wsgi`, word for word, configured by the environment."""
    port = free_port()
    args = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "fulfillment_site.wsgi"]
    proc = stack._spawn("web-production", args, stack.env(app="it-web-prod", GUNICORN_BIND=f"127.0.0.1:{port}", **env))
    web = Web(proc, f"http://127.0.0.1:{port}")

    def up() -> bool:
        try:
            return not proc.alive() or requests.get(web.url + "/api/products", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(up, timeout=PROCESS_START_TIMEOUT, what="gunicorn to answer", on_timeout=lambda: proc.log()[-2000:])
    assert proc.alive(), proc.log()[-3000:]
    return web


def _order_request(web: Web, product: Product, key: str) -> requests.Response:
    body = {"email": "buyer@example.com", "items": [{"product": product.pk, "quantity": 1, "recipient": "0812"}]}
    return requests.post(f"{web.url}/api/orders", json=body, headers={"Idempotency-Key": key}, timeout=90)


def test_the_webhook_answers_while_customers_wait_on_a_bank_that_does_not_answer(stack, settings, order_factory):
    product = Product.objects.create(name="Voucher", sku="v1", price_kopecks=15000)
    paid_meanwhile = order_factory()
    with FakeTBank(terminal_key=settings.TBANK_TERMINAL_KEY, password=settings.TBANK_PASSWORD) as bank:
        bank.hold = threading.Event()  # every Init waits until the test lets the bank answer
        web = _start_production_web(
            stack, TBANK_API_URL=bank.api_url, WEB_CONCURRENCY="1", GUNICORN_THREADS="4", CHECKOUT_MAX_IN_FLIGHT="1"
        )
        children = Path(f"/proc/{web.proc.pid}/task/{web.proc.pid}/children").read_text().split()
        assert len(children) == 1, "WEB_CONCURRENCY sets the number of worker processes"

        first: list[requests.Response] = []
        waiting = threading.Thread(target=lambda: first.append(_order_request(web, product, "first")))
        waiting.start()
        try:
            wait_until(lambda: bank.waiting == 1, timeout=60, what="the first checkout to wait on the bank")

            # The process's only checkout slot is taken: the next customer is told to come back,
            # at once, and nothing of theirs is written.
            refused = _order_request(web, product, "second")
            assert refused.status_code == 503 and refused.json()["code"] == "checkout_busy"
            assert refused.headers["Retry-After"] == "2"
            assert not Order.objects.filter(idempotency_keys__key="second").exists()

            # The bank's notification and the catalogue are answered while the first still waits.
            answer = web.post_notification(notification(paid_meanwhile))
            assert (answer.status_code, answer.text) == (200, "OK")
            assert requests.get(f"{web.url}/api/products", timeout=30).status_code == 200
            assert bank.waiting == 1 and not first
            paid_meanwhile.refresh_from_db()
            assert paid_meanwhile.status == "paid"
        finally:
            bank.hold.set()
            waiting.join(timeout=90)

        assert first[0].status_code == 201 and first[0].json()["payment_url"]
        again = _order_request(web, product, "second")
        assert again.status_code == 201 and again.json()["payment_url"]
        assert len(bank.calls("Init")) == 2
