"""The Digiflazz provider on its own: signing, request bodies, answer mapping, configuration."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests
import responses
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from fulfillment.models import Delivery
from fulfillment.providers.base import FailureScope, FulfillmentParams, Outcome
from fulfillment.providers.digiflazz import (
    PENDING_CODES,
    RESPONSE_CODES,
    DigiflazzClient,
    DigiflazzProvider,
    result_from_data,
    sign,
)
from fulfillment.registry import get_fulfillment_provider, validate_provider_settings
from fulfillment.services import fulfill_order
from tests.conftest import DIGIFLAZZ_API_KEY, DIGIFLAZZ_BASE_URL, DIGIFLAZZ_USERNAME

# Every code the reference lists as a final failure (response-code page, codes 62-99 included).
DOCUMENTED_FAILURE_CODES = (
    {"01", "02", "40", "41", "42", "43", "44", "45", "47", "49"}
    | {str(code) for code in range(50, 75)}
    | {str(code) for code in range(80, 89)}
)


def params(**overrides) -> FulfillmentParams:
    values = {
        "reference": "ref0001",
        "unit_key": "1-1-0",
        "sku": "xld10",
        "recipient": "087800001230",
        "order_id": 1,
    }
    values.update(overrides)
    return FulfillmentParams(**values)


def client(**overrides) -> DigiflazzClient:
    values = {"username": DIGIFLAZZ_USERNAME, "api_key": DIGIFLAZZ_API_KEY, "base_url": DIGIFLAZZ_BASE_URL}
    values.update(overrides)
    return DigiflazzClient(**values)


# --- signing and request bodies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        # md5("username" + "key" + suffix), computed independently.
        ("depo", "46d4f3215ce90fe790a9001dc849bc6a"),
        ("pricelist", "eb0c4103897385968f5161bb8d865eaf"),
        ("some1d", "2fca734a273de7f788b89b36fc3dcce5"),
    ],
)
def test_sign_is_md5_of_username_key_and_suffix(suffix, expected):
    assert sign("username", "key", suffix) == expected


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_transaction_body_per_documented_fields(fake_digiflazz, digiflazz_order):
    order = digiflazz_order(recipient="087800001230", max_price=12000)
    fulfill_order(order.pk)

    unit = Delivery.objects.get(order=order)
    [body] = fake_digiflazz.transaction_calls
    assert body == {
        "username": DIGIFLAZZ_USERNAME,
        "buyer_sku_code": "xld10",
        "customer_no": "087800001230",
        "ref_id": unit.reference,
        "sign": _md5(DIGIFLAZZ_USERNAME + DIGIFLAZZ_API_KEY + unit.reference),
        "testing": True,
        "max_price": 12000,
    }


def test_production_mode_sends_no_testing_flag_and_callback_url_when_set(fake_digiflazz, digiflazz_order, settings):
    settings.DIGIFLAZZ_TESTING = False
    settings.DIGIFLAZZ_CALLBACK_URL = "https://shop.example/api/fulfillment/digiflazz/callback"
    order = digiflazz_order()
    fulfill_order(order.pk)

    [body] = fake_digiflazz.transaction_calls
    assert "testing" not in body
    assert "max_price" not in body  # the product sets no cap
    assert body["cb_url"] == "https://shop.example/api/fulfillment/digiflazz/callback"


def test_balance_and_price_list_bodies():
    with responses.RequestsMock() as rsps:
        rsps.post(f"{DIGIFLAZZ_BASE_URL}/cek-saldo", json={"data": {"deposit": 500000}})
        rsps.post(f"{DIGIFLAZZ_BASE_URL}/price-list", json={"data": []})
        api = client()
        assert api.balance() == 500000
        assert api.price_list() == []
        balance_body, list_body = (json.loads(call.request.body) for call in rsps.calls)
    assert balance_body == {
        "cmd": "deposit",
        "username": DIGIFLAZZ_USERNAME,
        "sign": _md5(DIGIFLAZZ_USERNAME + DIGIFLAZZ_API_KEY + "depo"),
    }
    assert list_body == {
        "cmd": "prepaid",
        "username": DIGIFLAZZ_USERNAME,
        "sign": _md5(DIGIFLAZZ_USERNAME + DIGIFLAZZ_API_KEY + "pricelist"),
    }


# --- answer mapping ---------------------------------------------------------------------------


def test_success_is_delivered_with_sn_as_serial():
    result = result_from_data({"ref_id": "r", "status": "Sukses", "rc": "00", "sn": "1234567890", "message": "ok"})
    assert result.outcome == Outcome.DELIVERED
    assert result.serial == "1234567890"
    assert result.code == "00"


@pytest.mark.parametrize("rc", ["03", "99"])
def test_pending_codes_are_pending(rc):
    result = result_from_data({"ref_id": "r", "status": "Pending", "rc": rc, "sn": ""})
    assert result.outcome == Outcome.PENDING
    assert result.failure_scope is None


@pytest.mark.parametrize(
    ("rc", "scope"),
    [
        ("44", FailureScope.SHOP),  # balance: the whole shop's deposit
        ("53", FailureScope.PRODUCT),  # seller product unavailable
        ("55", FailureScope.PRODUCT),  # product disrupted
        ("68", FailureScope.PRODUCT),  # out of stock
        ("85", FailureScope.SHOP),  # rate limit of the shop's account
        ("43", FailureScope.PRODUCT),  # SKU not found: every unit of it fails alike
        ("01", FailureScope.RETRYABLE),  # timed out: this transaction
        ("54", FailureScope.PERMANENT),  # wrong number
        ("57", FailureScope.PERMANENT),  # wrong digit count
        ("41", FailureScope.CONFIGURATION),  # signature
        ("42", FailureScope.CONFIGURATION),  # username
        ("45", FailureScope.CONFIGURATION),  # IP not whitelisted
    ],
)
def test_failures_are_classified_by_rc(rc, scope):
    result = result_from_data({"ref_id": "r", "status": "Gagal", "rc": rc, "message": "their words"})
    assert result.outcome == Outcome.FAILED
    assert result.failure_scope == scope
    assert result.code == rc
    assert "their words" in result.message


def test_every_documented_failure_code_is_classified():
    assert set(RESPONSE_CODES) == DOCUMENTED_FAILURE_CODES
    assert not set(PENDING_CODES) & set(RESPONSE_CODES)


def test_configuration_failures_tell_staff_what_to_fix():
    signature = result_from_data({"status": "Gagal", "rc": "41", "message": "Signature Anda salah"})
    assert "DIGIFLAZZ_API_KEY" in signature.message
    assert "Provider halts" in signature.message
    ip = result_from_data({"status": "Gagal", "rc": "45", "message": "IP Anda tidak kami kenali"})
    assert "whitelist" in ip.message
    assert "DIGIFLAZZ_USERNAME" in result_from_data({"status": "Gagal", "rc": "42"}).message


def test_unknown_failure_code_needs_a_person():
    result = result_from_data({"status": "Gagal", "rc": "77", "message": "new thing"})
    assert result.outcome == Outcome.FAILED
    assert result.failure_scope == FailureScope.PERMANENT
    assert "RESPONSE_CODES" in result.message


def test_error_answer_without_status_is_read_from_rc():
    result = result_from_data({"rc": "45", "message": "IP Anda tidak kami kenali"}, http_status=400)
    assert result.failure_scope == FailureScope.CONFIGURATION
    assert result.raw["http_status"] == 400


@pytest.mark.parametrize("data", [{}, {"message": "hello"}, {"rc": "77"}, {"status": "Weird", "rc": ""}])
def test_answer_that_says_nothing_usable_is_unknown(data):
    assert result_from_data(data) is None


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"data": {"ref_id": "ref0001", "status": "Gagal", "rc": "44", "message": "Saldo tidak cukup"}}, "failed"),
        (400, {"data": {"rc": "41", "message": "Signature Anda salah"}}, "failed"),
        (500, "<html>Internal Server Error</html>", "pending"),
        (503, {"unexpected": True}, "pending"),
        (200, {"data": {"ref_id": "another", "status": "Sukses", "rc": "00", "sn": "1"}}, "pending"),
        (200, {"data": ["not", "a", "transaction"]}, "pending"),
    ],
)
def test_body_is_parsed_whatever_the_http_status(status, body, expected):
    with responses.RequestsMock() as rsps:
        if isinstance(body, str):
            rsps.post(f"{DIGIFLAZZ_BASE_URL}/transaction", body=body, status=status)
        else:
            rsps.post(f"{DIGIFLAZZ_BASE_URL}/transaction", json=body, status=status)
        result = client().transaction(params())
    assert result.outcome == expected


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectTimeout("connect timed out"),
        requests.exceptions.ConnectionError("connection reset"),
        requests.exceptions.ChunkedEncodingError("broken"),
    ],
)
def test_transport_errors_are_pending_never_failed(error):
    with responses.RequestsMock() as rsps:
        rsps.post(f"{DIGIFLAZZ_BASE_URL}/transaction", body=error)
        result = client().transaction(params())
    assert result.outcome == Outcome.PENDING
    assert result.raw["http_status"] is None


def test_answers_never_carry_the_signature():
    with responses.RequestsMock() as rsps:
        rsps.post(
            f"{DIGIFLAZZ_BASE_URL}/transaction",
            json={"data": {"ref_id": "ref0001", "status": "Sukses", "rc": "00", "sn": "9", "sign": "abc"}},
        )
        result = client().transaction(params())
    assert "sign" not in result.raw


def test_check_of_a_transaction_older_than_90_days_sends_nothing(digiflazz_settings):
    from datetime import timedelta

    from django.utils import timezone

    provider = DigiflazzProvider(client())
    with responses.RequestsMock() as rsps:  # any request would fail: nothing is registered
        result = provider.check_status(params(first_sent_at=timezone.now() - timedelta(days=91)))
        assert not rsps.calls
    assert result.outcome == Outcome.FAILED
    assert result.failure_scope == FailureScope.PERMANENT


def test_engine_intervals():
    assert DigiflazzProvider.min_check_interval.total_seconds() == 60
    assert DigiflazzProvider.max_check_age.days == 90


# --- configuration ----------------------------------------------------------------------------


@pytest.fixture
def digiflazz_without_credentials(settings):
    settings.FULFILLMENT_PROVIDER = "digiflazz"
    settings.DIGIFLAZZ_USERNAME = ""
    settings.DIGIFLAZZ_API_KEY = ""
    return settings


def test_missing_credentials_fail_the_system_check(digiflazz_without_credentials):
    with pytest.raises(SystemCheckError) as excinfo:
        call_command("check")
    assert "DIGIFLAZZ_USERNAME" in str(excinfo.value)
    assert "DIGIFLAZZ_API_KEY" in str(excinfo.value)


def test_missing_key_alone_is_named(digiflazz_without_credentials):
    digiflazz_without_credentials.DIGIFLAZZ_USERNAME = "shopbuyer"
    errors = DigiflazzProvider.configuration_errors()
    assert len(errors) == 1
    assert "DIGIFLAZZ_API_KEY" in errors[0]
    assert "DIGIFLAZZ_USERNAME" not in errors[0]


def test_missing_credentials_stop_startup_and_provider_creation(digiflazz_without_credentials):
    with pytest.raises(ImproperlyConfigured, match="DIGIFLAZZ_USERNAME and DIGIFLAZZ_API_KEY"):
        validate_provider_settings()  # what wsgi.py and the Celery worker_init run
    with pytest.raises(ImproperlyConfigured, match="DIGIFLAZZ_API_KEY"):
        get_fulfillment_provider()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DIGIFLAZZ_BASE_URL", "api.digiflazz.com/v1", "DIGIFLAZZ_BASE_URL"),
        ("DIGIFLAZZ_CALLBACK_URL", "shop.example/callback", "DIGIFLAZZ_CALLBACK_URL"),
        ("DIGIFLAZZ_TIMEOUT_SECONDS", 0, "DIGIFLAZZ_TIMEOUT_SECONDS"),
    ],
)
def test_invalid_settings_are_named(digiflazz_settings, name, value, expected):
    setattr(digiflazz_settings, name, value)
    [error] = DigiflazzProvider.configuration_errors()
    assert expected in error


def test_complete_settings_pass_the_check(digiflazz_settings):
    call_command("check")
    assert isinstance(get_fulfillment_provider(), DigiflazzProvider)
