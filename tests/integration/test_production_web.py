"""The web process as deployed: gunicorn with DEBUG off serves the admin's styles (WhiteNoise,
after `collectstatic`), and with DJANGO_HTTPS=true behind a TLS proxy it redirects plain HTTP,
sends HSTS and secure cookies, and still takes the bank's notifications."""

import json
import re

import pytest
import requests

from tests.conftest import WEBHOOK_URL, notification
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
