"""The T-Bank client (orders.tbank.client) against the fake bank: signing, answers, refusals and
unknown outcomes, and Cancel's ExternalRequestId idempotency."""

from __future__ import annotations

import pytest
import requests

from orders.tbank.client import TBankClient, TBankNotConfigured, TBankRefused, TBankUnavailable
from orders.tbank.receipts import ReceiptError, ReceiptLine, receipt_build, receipt_total
from orders.tbank.signing import compute_token
from tests.fakes.tbank_server import FakeTBank, Fault

PASSWORD = "fake-bank-password"


@pytest.fixture
def bank():
    with FakeTBank(terminal_key="FakeTerminal", password=PASSWORD) as fake:
        yield fake


@pytest.fixture
def client(bank) -> TBankClient:
    return TBankClient(terminal_key="FakeTerminal", password=PASSWORD, base_url=bank.api_url, timeout=2)


def test_init_token_matches_the_documented_vector_tv3():
    client = TBankClient(terminal_key="MerchantTerminalKey", password="usaf8fw8fsw21g", base_url="http://x/")
    signed = client.sign(
        {
            "Amount": 19200,
            "OrderId": "21090",
            "Description": "Подарочная карта на 1000 рублей",
            "DATA": {"Phone": "+71234567890"},
            "Receipt": {"Items": []},
        }
    )
    assert signed["Token"] == "0024a00af7c350a3a67ca168ce06502aa72772456662e38696d48b56ee9c97d9"


def test_init_creates_a_payment_and_returns_its_url(bank, client):
    answer = client.init(amount=30000, order_id="ord-1", description="Top-up", notification_url="http://shop/n")
    assert answer.payment_url == f"{bank.base_url}/pay/{answer.payment_id}"
    assert bank.payments[answer.payment_id].amount == 30000
    sent = bank.calls("Init")[0]
    assert sent["Token"] == "***" and sent["TerminalKey"] == "FakeTerminal"
    assert "Token" not in answer.raw or answer.raw["Token"] == "***"


def test_a_refusal_names_the_bank_error_and_never_the_password(bank, client):
    bank.inject("Init", Fault("refuse", error_code="8", message="Неверный статус транзакции"))
    with pytest.raises(TBankRefused) as caught:
        client.init(amount=100, order_id="x")
    assert caught.value.error_code == "8"
    assert "ErrorCode 8" in str(caught.value)
    assert PASSWORD not in repr(caught.value.__dict__) + str(caught.value)


def test_a_wrong_password_is_refused_by_the_bank(bank):
    wrong = TBankClient(terminal_key="FakeTerminal", password="nope", base_url=bank.api_url)
    with pytest.raises(TBankRefused) as caught:
        wrong.get_state(payment_id="1")
    assert caught.value.error_code == "204"


@pytest.mark.parametrize("kind", ["http500", "lose_answer"])
def test_no_readable_answer_is_an_unknown_outcome(bank, client, kind):
    bank.inject("Init", Fault(kind, delay=3))
    with pytest.raises(TBankUnavailable) as caught:
        client.init(amount=100, order_id="lost")
    assert "unknown" in str(caught.value)
    assert PASSWORD not in str(caught.value.request)


def test_an_unreachable_bank_is_an_unknown_outcome():
    client = TBankClient(terminal_key="K", password=PASSWORD, base_url="http://127.0.0.1:9/v2/", timeout=1)
    with pytest.raises(TBankUnavailable):
        client.get_state(payment_id="1")


def test_check_order_lists_payments_and_is_empty_for_an_unknown_order(bank, client):
    assert client.check_order(order_id="nothing") == []
    first = client.init(amount=500, order_id="o-2")
    states = client.check_order(order_id="o-2")
    assert [(s.payment_id, s.status, s.amount) for s in states] == [(first.payment_id, "NEW", 500)]


def test_cancel_with_the_same_external_request_id_refunds_once(bank, client):
    payment = client.init(amount=1000, order_id="o-3")
    bank.notify_on_cancel = False
    bank.pay(payment.payment_id, notify=False)
    receipt = receipt_build(
        lines=[ReceiptLine("Voucher", 400, 1)], email="c@example.com", taxation="usn_income", tax="none"
    )
    first = client.cancel(payment_id=payment.payment_id, amount=400, receipt=receipt, external_request_id="r-1")
    again = client.cancel(payment_id=payment.payment_id, amount=400, receipt=receipt, external_request_id="r-1")
    assert (first.status, first.original_amount, first.new_amount) == ("PARTIAL_REFUNDED", 1000, 600)
    assert again.new_amount == 600
    assert bank.payments[payment.payment_id].refunded == 400
    assert client.get_state(payment_id=payment.payment_id).status == "PARTIAL_REFUNDED"


def test_receipt_items_are_price_times_quantity_and_add_up():
    receipt = receipt_build(
        lines=[ReceiptLine("A", 15000, 2), ReceiptLine("B", 999, 3)],
        email="c@example.com",
        taxation="osn",
        tax="vat20",
    )
    assert [item["Amount"] for item in receipt["Items"]] == [30000, 2997]
    assert receipt_total(receipt) == 32997
    assert receipt["Items"][0]["PaymentMethod"] == "full_prepayment"
    with pytest.raises(ReceiptError):
        receipt_build(lines=[], email="c@example.com", taxation="osn", tax="none")
    with pytest.raises(ReceiptError):
        receipt_build(lines=[ReceiptLine("A", 1, 1)], email="", taxation="osn", tax="none")


def test_from_settings_names_the_missing_credentials(settings):
    settings.TBANK_PASSWORD = ""
    with pytest.raises(TBankNotConfigured, match="TBANK_PASSWORD"):
        TBankClient.from_settings()


def test_the_fake_bank_checks_tokens_like_the_bank(bank):
    body = {"TerminalKey": "FakeTerminal", "PaymentId": "1"}
    body["Token"] = compute_token(body, "wrong")
    answer = requests.post(f"{bank.api_url}GetState", json=body, timeout=5).json()
    assert answer["ErrorCode"] == "204"
