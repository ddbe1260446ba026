"""The machine endpoints (the T-Bank webhook, the Digiflazz callback) answer machines: JSON or
plain text, never DRF's browsable HTML page, and never their docstrings."""

from __future__ import annotations

import pytest
from django.test import Client

from fulfillment.views import DigiflazzCallbackView
from orders.views import TBankNotificationView
from tests.conftest import WEBHOOK_URL

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "tbank": (WEBHOOK_URL, TBankNotificationView),
    "digiflazz": ("/api/fulfillment/digiflazz/callback", DigiflazzCallbackView),
}
BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def _docstring_fragments(view) -> list[str]:
    # A few distinctive phrases of the class and method docstrings.
    texts = [view.__doc__ or "", view.post.__doc__ or ""]
    return [line.strip()[:40] for text in texts for line in text.splitlines() if len(line.strip()) > 30]


@pytest.mark.parametrize("name", ENDPOINTS)
@pytest.mark.parametrize("method", ["get", "put", "delete", "patch", "head"])
def test_a_browser_gets_a_plain_405(name, method):
    url, view = ENDPOINTS[name]
    response = getattr(Client(), method)(url, **BROWSER)

    assert response.status_code == 405
    assert response["Content-Type"].startswith(("application/json", "text/plain"))
    body = response.content.decode()
    assert "<html" not in body.lower() and "<!doctype" not in body.lower()
    for fragment in _docstring_fragments(view):
        assert fragment not in body
    assert "POST" in response["Allow"]


@pytest.mark.parametrize("name", ENDPOINTS)
@pytest.mark.parametrize("accept", ["text/html", "application/json", "*/*"])
def test_options_says_what_is_allowed_and_nothing_more(name, accept):
    url, view = ENDPOINTS[name]
    response = Client().options(url, HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert [m.strip() for m in response["Allow"].split(",")] == ["POST", "OPTIONS"]
    body = response.content.decode()
    assert view.__name__ not in body and "Notification" not in body and "Callback" not in body
    for fragment in _docstring_fragments(view):
        assert fragment not in body
    assert body == ""


@pytest.mark.parametrize("name", ENDPOINTS)
def test_the_endpoints_offer_no_html_renderer(name):
    _, view = ENDPOINTS[name]
    assert [renderer.media_type for renderer in view.renderer_classes] == ["application/json"]


def test_a_notification_sent_with_accept_html_is_still_processed(order_factory):
    import json

    from tests.conftest import notification

    order = order_factory()
    response = Client().post(
        WEBHOOK_URL, data=json.dumps(notification(order)), content_type="application/json", **BROWSER
    )
    assert (response.status_code, response.content) == (200, b"OK")


def test_a_callback_sent_with_accept_html_is_answered_in_json(fake_digiflazz, client):
    # Unsigned while a secret is set: refused, but by the view (403), not by content negotiation (406).
    response = client.post(
        "/api/fulfillment/digiflazz/callback", data=b'{"hook_id": "x"}', content_type="application/json", **BROWSER
    )
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert "X-Hub-Signature" in response.json()["detail"]
