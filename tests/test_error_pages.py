"""Django's technical 500 page (DEBUG on) for an error inside a function that holds a secret:
the page shows the frames, never the terminal password, the webhook secret or the API key."""

from __future__ import annotations

import hashlib
import hmac
import json
from types import SimpleNamespace

import pytest
from django.test import Client

from tests.conftest import (
    DIGIFLAZZ_API_KEY,
    DIGIFLAZZ_CALLBACK_URL,
    DIGIFLAZZ_WEBHOOK_SECRET,
    WEBHOOK_URL,
    notification,
)

pytestmark = pytest.mark.django_db


class Boom(Exception):
    pass


def _boom(*args, **kwargs):
    raise Boom("failure injected by the test")


def _technical_500(response) -> str:
    assert response.status_code == 500
    page = response.content.decode()
    # The real debug page, with its frames and local variables, not a bare "Server Error".
    assert "Traceback" in page and "Local vars" in page and "Boom" in page
    return page


def test_digiflazz_signature_check_error_page_hides_the_webhook_secret(fake_digiflazz, settings, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setattr(
        "fulfillment.providers.digiflazz.hmac", SimpleNamespace(new=hmac.new, compare_digest=_boom), raising=True
    )
    body = b'{"data": {"ref_id": "R1", "status": "Sukses", "rc": "00"}}'
    signature = "sha1=" + hmac.new(DIGIFLAZZ_WEBHOOK_SECRET.encode(), body, hashlib.sha1).hexdigest()

    response = Client(raise_request_exception=False).post(
        DIGIFLAZZ_CALLBACK_URL, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE=signature
    )

    page = _technical_500(response)
    assert "callback_signature_valid" in page and "callback_parse" in page
    assert DIGIFLAZZ_WEBHOOK_SECRET not in page
    assert DIGIFLAZZ_API_KEY not in page


def test_tbank_token_error_page_hides_the_terminal_password(order_factory, settings, monkeypatch):
    settings.DEBUG = True
    order = order_factory()
    body = json.dumps(notification(order))
    monkeypatch.setattr("orders.tbank.signing.hashlib", SimpleNamespace(sha256=_boom))

    response = Client(raise_request_exception=False).post(WEBHOOK_URL, data=body, content_type="application/json")

    page = _technical_500(response)
    assert "compute_token" in page and "token_is_valid" in page
    assert settings.TBANK_PASSWORD not in page


def test_digiflazz_request_signing_error_page_hides_the_api_key(fake_digiflazz, settings, monkeypatch):
    # The delivery engine turns provider exceptions into unknown outcomes, so render the page
    # for the exception directly, as Django's handler would for a view that called sign().
    from django.test import RequestFactory
    from django.views.debug import technical_500_response

    from fulfillment.providers.digiflazz import DigiflazzClient

    settings.DEBUG = True
    monkeypatch.setattr("fulfillment.providers.digiflazz.hashlib", SimpleNamespace(md5=_boom))
    client = DigiflazzClient.from_settings()
    with pytest.raises(Boom) as excinfo:
        client.sign("depo")

    response = technical_500_response(RequestFactory().get("/"), excinfo.type, excinfo.value, excinfo.tb)

    page = _technical_500(response)
    assert "api_key" in page  # the variable is listed, its value is not
    assert DIGIFLAZZ_API_KEY not in page


def test_form_encoded_parameters_are_hidden_on_the_error_page(db, settings, monkeypatch):
    # The page lists request.POST; on a machine endpoint every parameter is signature material.
    settings.DEBUG = True
    monkeypatch.setattr("orders.views.client_address", _boom)

    response = Client(raise_request_exception=False).post(
        WEBHOOK_URL, data={"Token": "form-token-value-0123", "TerminalKey": "form-terminal-4567"}
    )

    page = _technical_500(response)
    assert "form-token-value-0123" not in page and "form-terminal-4567" not in page
    assert "********************" in page
