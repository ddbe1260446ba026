"""POST /api/orders: the Init request it sends, validation, idempotent repeats, Init failures and
unknown outcomes, throttling."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from orders.api.errors import ERROR_CODES
from orders.models import IdempotencyKey, Order, OrderItem, Payment, TBankCall, TBankCallOutcome
from orders.services.checkout import init_request
from orders.tbank.client import TBankClient
from orders.tbank.receipts import receipt_total
from orders.tbank.signing import compute_token
from tests.checkout.conftest import order_body
from tests.fakes.tbank_server import Fault

pytestmark = pytest.mark.django_db


def nothing_written() -> bool:
    return not (Order.objects.exists() or OrderItem.objects.exists() or IdempotencyKey.objects.exists())


# --- the Init request -------------------------------------------------------------------------


def test_order_is_created_new_and_init_carries_everything_the_issue_lists(bank, post_order, phone_product, settings):
    settings.TBANK_PAYMENT_TTL_MINUTES = 45
    before = timezone.now().replace(microsecond=0)

    response = post_order(order_body(phone_product, quantity=3), key="k-1")

    assert response.status_code == 201, response.content
    body = response.json()
    order = Order.objects.get()
    assert order.status == "new" and order.amount_kopecks == 45000
    assert set(body) == {"id", "status", "amount", "payment_url", "status_url", "access_token", "expires_at"}
    assert body["id"] == order.public_id and body["status"] == "new" and body["amount"] == 45000
    assert body["access_token"] == order.access_token
    status_url = f"https://shop.example.com/orders/{order.public_id}/?token={order.access_token}"
    assert body["status_url"] == status_url
    (sent,) = bank.calls("Init")
    payment = bank.payment_for(order.public_id)
    assert body["payment_url"] == f"{bank.base_url}/pay/{payment.payment_id}"
    assert sent["Amount"] == 45000 and sent["OrderId"] == order.public_id
    assert sent["NotificationURL"] == "https://shop.example.com/api/payments/tbank/notification"
    assert sent["SuccessURL"] == status_url and sent["FailURL"] == status_url
    assert sent["DATA"] == {"Email": "buyer@example.com"}
    assert "Mobile credit 10k x3" in sent["Description"]
    due = datetime.fromisoformat(sent["RedirectDueDate"])
    assert sent["RedirectDueDate"][-6:] in ("+00:00",) and len(sent["RedirectDueDate"]) == 25
    assert before + timedelta(minutes=45) <= due <= timezone.now() + timedelta(minutes=45)
    assert datetime.fromisoformat(body["expires_at"]) == due
    receipt = sent["Receipt"]
    assert receipt["Email"] == "buyer@example.com" and receipt["Taxation"] == settings.TBANK_RECEIPT_TAXATION
    assert receipt["Items"] == [
        {
            "Name": "Mobile credit 10k",
            "Price": 15000,
            "Quantity": 3,
            "Amount": 45000,
            "Tax": settings.TBANK_RECEIPT_TAX,
            "PaymentMethod": "full_prepayment",
            "PaymentObject": "service",
        }
    ]
    stored = Payment.objects.get(order=order)
    assert stored.payment_id == payment.payment_id and stored.payment_url == body["payment_url"]
    assert stored.expires_at == due
    call = TBankCall.objects.get(order=order)
    assert call.method == "Init" and call.outcome == TBankCallOutcome.OK
    assert order.access_token not in str(call.request)  # the status links stay out of the audit record


def test_the_init_token_is_the_documented_one(bank, phone_product, voucher_product):
    """TV3 from the reference, then the real request: the fake bank refuses (204) any other Token."""
    tv3 = TBankClient(terminal_key="MerchantTerminalKey", password="usaf8fw8fsw21g", base_url="http://x/").sign(
        {"Amount": 19200, "OrderId": "21090", "Description": "Подарочная карта на 1000 рублей", "DATA": {"a": 1}}
    )
    assert tv3["Token"] == "0024a00af7c350a3a67ca168ce06502aa72772456662e38696d48b56ee9c97d9"
    from orders.services.lifecycle import ItemSpec, order_create

    order = order_create(items=[ItemSpec(product=voucher_product, recipient="x")], customer_email="a@b.co")
    client = TBankClient.from_settings()
    request = init_request(order)
    signed = client.sign(
        {
            "Amount": request["amount"],
            "OrderId": request["order_id"],
            "Description": request["description"],
            "Receipt": request["receipt"],
        }
    )
    root = {k: v for k, v in signed.items() if k not in ("Receipt", "Token")}
    assert signed["Token"] == compute_token(root, client._password)
    answer = client.init(**request)
    assert answer.payment_id in bank.payments  # accepted: the Token and the receipt were right


def test_receipt_items_add_up_to_the_amount(bank, post_order, phone_product, voucher_product):
    body = {
        "email": "buyer@example.com",
        "items": [
            {"product": phone_product.pk, "quantity": 2, "recipient": "0812345678"},
            {"product": voucher_product.pk, "quantity": 3, "recipient": "me@example.com"},
        ],
    }
    response = post_order(body)
    assert response.status_code == 201, response.content
    (sent,) = bank.calls("Init")
    items = sent["Receipt"]["Items"]
    assert [(i["Price"], i["Quantity"], i["Amount"]) for i in items] == [(15000, 2, 30000), (55000, 3, 165000)]
    assert receipt_total(sent["Receipt"]) == sent["Amount"] == 195000 == response.json()["amount"]


def test_no_receipt_when_the_terminal_has_no_kassa(bank, post_order, phone_product, settings):
    settings.TBANK_RECEIPT_ENABLED = False
    assert post_order(order_body(phone_product)).status_code == 201
    assert "Receipt" not in bank.calls("Init")[0]


def test_catalogue_lists_active_products_with_recipient_rules(client, phone_product, voucher_product):
    voucher_product.is_active = False
    voucher_product.save()
    response = client.get("/api/products")
    assert response.status_code == 200
    assert response.json() == [
        {
            "id": phone_product.pk,
            "name": "Mobile credit 10k",
            "price": 15000,
            "currency": "RUB",
            "recipient_label": "Phone number",
            "recipient_pattern": "08[0-9]{8,11}",
            "sellable": True,  # no supplier catalogue says otherwise
            "sellable_again_at": None,
        }
    ]


# --- validation ---------------------------------------------------------------------------------


def assert_error_shape(response, status: int, code: str) -> list[dict]:
    """The one error shape of the API: detail, code, and one entry per bad field."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"detail", "code", "errors"} and body["code"] == code, body
    assert code in ERROR_CODES, f"{code} is not documented in the schema (ERROR_CODES)"
    assert body["detail"] and all(set(error) == {"field", "message", "code"} for error in body["errors"])
    return body["errors"]


# A request that breaks the schema: 400, each bad field named by its JSON Pointer.
@pytest.mark.parametrize(
    ("mutate", "field", "code", "fragment"),
    [
        (lambda b: b.update(email="not-an-email"), "/email", "invalid", "valid email"),
        (lambda b: b.update(email=" buyer@example.com"), "/email", "invalid", "valid email"),
        (lambda b: b.update(email=7), "/email", "invalid", "valid email"),
        (lambda b: b.pop("email"), "/email", "required", "required"),
        (lambda b: b.update(items=[]), "/items", "empty", "empty"),
        (lambda b: b.update(items=b["items"] * 21), "/items", "max_length", "no more than 20"),
        (lambda b: b["items"][0].update(product=0), "/items/0/product", "min_value", "greater than or equal to 1"),
        (lambda b: b["items"][0].update(product=2**53), "/items/0/product", "max_value", "less than or equal to"),
        (lambda b: b["items"][0].update(quantity=0), "/items/0/quantity", "min_value", "greater than or equal to 1"),
        (lambda b: b["items"][0].update(quantity=21), "/items/0/quantity", "max_value", "less than or equal to 20"),
        (lambda b: b["items"][0].update(quantity="2"), "/items/0/quantity", "invalid", "whole number"),
        (lambda b: b["items"][0].update(quantity=True), "/items/0/quantity", "invalid", "whole number"),
        (lambda b: b["items"][0].update(quantity=1.5), "/items/0/quantity", "invalid", "whole number"),
        (lambda b: b["items"][0].update(recipient=812345678), "/items/0/recipient", "invalid", "JSON string"),
        (lambda b: b["items"][0].update(recipient=0), "/items/0/recipient", "invalid", "JSON string"),
        (lambda b: b["items"][0].update(recipient="   "), "/items/0/recipient", "invalid", "not only spaces"),
        (lambda b: b["items"][0].update(recipient="0812\n345"), "/items/0/recipient", "invalid", "control"),
        (lambda b: b["items"][0].update(recipient="0" * 101), "/items/0/recipient", "max_length", "100"),
        (lambda b: b["items"][0].update(colour="red"), "/items/0/colour", "invalid", "Unknown field"),
        (lambda b: b.update(coupon="X"), "/coupon", "invalid", "Unknown field"),
    ],
)
def test_each_schema_violation_is_a_400_naming_the_field_and_nothing_is_written_or_sent(
    bank, post_order, phone_product, mutate, field, code, fragment
):
    body = order_body(phone_product)
    mutate(body)
    response = post_order(body, key="same-key")
    errors = assert_error_shape(response, 400, "invalid")
    assert [(error["field"], error["code"]) for error in errors] == [(field, code)], errors
    assert fragment in errors[0]["message"], errors
    assert field in response.json()["detail"] and fragment in response.json()["detail"]
    assert nothing_written() and not bank.requests


def test_a_body_that_is_not_an_object_is_a_400_about_the_whole_body(bank, post_order):
    errors = assert_error_shape(post_order([1, 2]), 400, "invalid")
    assert [error["field"] for error in errors] == [""]
    assert nothing_written()


def test_errors_of_several_items_come_in_the_one_shape(bank, post_order, phone_product):
    body = order_body(phone_product)
    body["items"] = [dict(body["items"][0], quantity=0), dict(body["items"][0]), dict(body["items"][0], recipient=5)]
    errors = assert_error_shape(post_order(body), 400, "invalid")
    assert [error["field"] for error in errors] == ["/items/0/quantity", "/items/2/recipient"]
    assert "and 1 more problem" in post_order(body).json()["detail"]


# A request the schema allows that cannot be sold as asked: 422, the item at fault named.
@pytest.mark.parametrize(
    ("mutate", "field", "code", "fragment"),
    [
        (lambda b: b["items"][0].update(product=999999), "/items/0/product", "not_on_sale", "No product with id 9"),
        (lambda b: b["items"][0].update(recipient="12345"), "/items/0/recipient", "recipient_format", "valid Phone"),
    ],
)
def test_an_order_the_schema_allows_but_the_catalogue_refuses_is_a_422(
    bank, post_order, phone_product, mutate, field, code, fragment
):
    body = order_body(phone_product)
    mutate(body)
    errors = assert_error_shape(post_order(body, key="same-key"), 422, "order_not_accepted")
    assert [(error["field"], error["code"]) for error in errors] == [(field, code)]
    assert fragment in errors[0]["message"]
    assert nothing_written() and not bank.requests


def test_an_inactive_product_is_refused(bank, post_order, phone_product):
    phone_product.is_active = False
    phone_product.save()
    errors = assert_error_shape(post_order(order_body(phone_product)), 422, "order_not_accepted")
    assert errors[0]["field"] == "/items/0/product" and "is on sale" in errors[0]["message"]
    assert nothing_written()


def test_units_across_items_are_capped_by_order_max_units(bank, post_order, phone_product, settings):
    settings.ORDER_MAX_UNITS = 5
    body = order_body(phone_product, quantity=3)
    body["items"].append(dict(body["items"][0]))
    errors = assert_error_shape(post_order(body), 422, "order_not_accepted")
    assert errors == [
        {
            "field": "/items",
            "message": "An order holds at most 5 units; this one has 6. Split it into several orders.",
            "code": "too_many_units",
        }
    ]
    assert nothing_written()


@pytest.mark.parametrize("key", ["has space", "", "x" * 256, "ключ"])
def test_a_bad_idempotency_key_header_is_refused(bank, post_order, phone_product, key):
    errors = assert_error_shape(post_order(order_body(phone_product), key=key), 400, "invalid")
    assert [error["field"] for error in errors] == ["Idempotency-Key"]
    assert nothing_written()


# --- idempotency ----------------------------------------------------------------------------------


def test_same_key_and_body_get_the_same_answer_without_a_second_order_or_init(bank, post_order, phone_product):
    first = post_order(order_body(phone_product), key="abc-1")
    again = post_order(order_body(phone_product), key="abc-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert Order.objects.count() == 1 and len(bank.calls("Init")) == 1


def test_a_key_is_scoped_to_its_client_and_never_hands_its_answer_to_another(bank, post_order, phone_product):
    first = post_order(order_body(phone_product), key="shared-1", REMOTE_ADDR="203.0.113.5")
    other = post_order(order_body(phone_product), key="shared-1", REMOTE_ADDR="198.51.100.7")
    again = post_order(order_body(phone_product), key="shared-1", REMOTE_ADDR="203.0.113.5")

    assert first.status_code == other.status_code == again.status_code == 201
    assert other.json()["access_token"] != first.json()["access_token"]
    assert other.json()["id"] != first.json()["id"]
    assert again.json() == first.json()
    assert Order.objects.count() == 2 and len(bank.calls("Init")) == 2


def test_key_order_and_spacing_of_the_body_do_not_matter(bank, post_order, phone_product):
    first = post_order(order_body(phone_product), key="abc-2")
    body = '{ "items": [{"recipient": "0812345678", "quantity": 1, "product": %d}], "email": "buyer@example.com" }'
    again = post_order(body % phone_product.pk, key="abc-2")
    assert again.status_code == 201 and again.json() == first.json()


def test_same_key_with_another_body_is_refused(bank, post_order, phone_product):
    assert post_order(order_body(phone_product), key="abc-3").status_code == 201
    other = post_order(order_body(phone_product, quantity=2), key="abc-3")
    assert assert_error_shape(other, 422, "idempotency_key_reused") == []
    assert "different request body" in other.json()["detail"]
    assert Order.objects.count() == 1 and len(bank.calls("Init")) == 1


def test_same_key_with_a_body_that_breaks_the_schema_is_a_400_not_a_reuse(bank, post_order, phone_product):
    # Found by Schemathesis: the key's record was looked up before the body was validated.
    assert post_order(order_body(phone_product), key="abc-4").status_code == 201
    errors = assert_error_shape(post_order({"items": [{"product": 1}]}, key="abc-4"), 400, "invalid")
    assert {error["field"] for error in errors} == {"/email", "/items/0/quantity", "/items/0/recipient"}


def test_a_repeat_gets_the_first_answer_even_after_its_product_left_the_shop(bank, post_order, phone_product):
    first = post_order(order_body(phone_product), key="abc-5")
    phone_product.is_active = False
    phone_product.save()
    again = post_order(order_body(phone_product), key="abc-5")
    assert (again.status_code, again.json()) == (201, first.json())


def test_without_a_key_each_request_is_a_new_order(bank, post_order, phone_product):
    assert post_order(order_body(phone_product)).status_code == 201
    assert post_order(order_body(phone_product)).status_code == 201
    assert Order.objects.count() == 2


def test_a_key_being_processed_answers_409(bank, post_order, phone_product):
    assert post_order(order_body(phone_product), key="busy").status_code == 201
    record = IdempotencyKey.objects.get()
    IdempotencyKey.objects.filter(pk=record.pk).update(response_status=None, init_started_at=timezone.now())
    response = post_order(order_body(phone_product), key="busy")
    assert assert_error_shape(response, 409, "idempotency_key_in_progress") == []
    assert len(bank.calls("Init")) == 1


def test_a_lost_race_on_the_key_creates_no_second_order(bank, phone_product):
    """Two requests with one key: the second insert of the key fails on the unique constraint,
    its order is rolled back with it, and it answers as a repeat."""
    from orders.services.checkout import checkout_request_hash, order_checkout
    from orders.services.lifecycle import ItemSpec

    items = [ItemSpec(product=phone_product, recipient="0812345678")]
    first = order_checkout(items=items, email="a@b.co", idempotency_key="race", request_hash=checkout_request_hash(1))
    second = order_checkout(items=items, email="a@b.co", idempotency_key="race", request_hash=checkout_request_hash(1))
    assert first == second and Order.objects.count() == 1 and len(bank.calls("Init")) == 1


# --- Init failures ----------------------------------------------------------------------------------


def test_init_refused_answers_503_keeps_the_order_new_and_a_repeat_pays_it(bank, post_order, phone_product):
    bank.inject("Init", Fault("refuse", error_code="9999", message="Внутренняя ошибка системы"))
    failed = post_order(order_body(phone_product), key="retry-1")
    assert assert_error_shape(failed, 503, "payment_unavailable") == []
    assert "refused" in failed.json()["detail"] and "9999" in failed.json()["detail"]
    order = Order.objects.get()
    assert order.status == "new" and not order.payments.exists()
    assert TBankCall.objects.get().outcome == TBankCallOutcome.REFUSED

    again = post_order(order_body(phone_product), key="retry-1")
    assert again.status_code == 201 and again.json()["id"] == order.public_id
    assert Order.objects.count() == 1 and len(bank.calls("Init")) == 2
    assert not bank.calls("CheckOrder")  # a refusal created nothing: no need to ask
    assert post_order(order_body(phone_product), key="retry-1").json() == again.json()


def settle_lost_inits() -> None:
    """Let TBANK_INIT_SETTLE_SECONDS pass for every Init whose answer was lost."""
    TBankCall.objects.filter(method="Init", outcome="unknown").update(created_at=timezone.now() - timedelta(hours=1))


def test_init_timeout_answers_503_and_the_repeat_cancels_the_unreachable_payment_first(bank, post_order, phone_product):
    bank.inject("Init", Fault("lose_answer", delay=2.0))  # the bank creates it; the answer comes too late
    failed = post_order(order_body(phone_product), key="timeout-1")
    assert failed.status_code == 503 and "did not answer" in failed.json()["detail"]
    order = Order.objects.get()
    assert order.status == "new"
    (lost,) = bank.payments.values()
    assert lost.status == "NEW"
    # Repeated at once, before the bank is sure to have registered the lost Init: nothing is started.
    early = post_order(order_body(phone_product), key="timeout-1")
    assert early.status_code == 503 and "Repeat the request in" in early.json()["detail"]
    assert [name for name, _ in bank.requests] == ["Init"]
    settle_lost_inits()

    again = post_order(order_body(phone_product), key="timeout-1")

    assert again.status_code == 201, again.content
    assert [name for name, _ in bank.requests] == ["Init", "CheckOrder", "Cancel", "Init"]
    assert lost.status == "CANCELED"
    live = [p for p in bank.payments.values() if p.status == "NEW"]
    assert len(live) == 1 and again.json()["payment_url"].endswith(live[0].payment_id)
    assert set(Payment.objects.values_list("payment_id", "bank_status")) == {
        (lost.payment_id, "CANCELED"),
        (live[0].payment_id, "NEW"),
    }
    assert list(TBankCall.objects.values_list("method", "outcome")) == [
        ("Init", "unknown"),
        ("CheckOrder", "ok"),
        ("Cancel", "ok"),
        ("Init", "ok"),
    ]


def test_an_http_500_is_an_unknown_outcome_and_checkorder_finds_nothing(bank, post_order, phone_product):
    bank.inject("Init", Fault("http500"))
    assert post_order(order_body(phone_product), key="500").status_code == 503
    settle_lost_inits()
    again = post_order(order_body(phone_product), key="500")
    assert again.status_code == 201
    assert [name for name, _ in bank.requests] == ["Init", "CheckOrder", "Init"]


def test_when_checkorder_fails_no_new_init_is_made(bank, post_order, phone_product):
    bank.inject("Init", Fault("http500"))
    assert post_order(order_body(phone_product), key="co").status_code == 503
    settle_lost_inits()
    bank.inject("CheckOrder", Fault("http500"))
    second = post_order(order_body(phone_product), key="co")
    assert second.status_code == 503 and "could not be verified" in second.json()["detail"]
    assert [name for name, _ in bank.requests] == ["Init", "CheckOrder"]
    assert post_order(order_body(phone_product), key="co").status_code == 201


def test_a_payment_captured_behind_a_lost_init_pays_the_order_instead_of_a_new_init(bank, post_order, phone_product):
    bank.inject("Init", Fault("lose_answer", delay=2.0))
    assert post_order(order_body(phone_product), key="paid-lost").status_code == 503
    (lost,) = bank.payments.values()
    lost.status = "CONFIRMED"  # paid somehow; its notification never reached us
    settle_lost_inits()

    again = post_order(order_body(phone_product), key="paid-lost")

    assert again.status_code == 201 and again.json()["status"] == "paid"
    assert len(bank.calls("Init")) == 1 and not bank.calls("Cancel")
    order = Order.objects.get()
    assert order.status == "paid" and order.payment_id == lost.payment_id
    assert order.notifications.get().source == "polling"


def test_payments_not_configured_answers_503(bank, post_order, phone_product, settings):
    settings.TBANK_PASSWORD = ""
    response = post_order(order_body(phone_product))
    assert response.status_code == 503 and "not configured" in response.json()["detail"]
    assert "test-terminal-password" not in response.content.decode()


# --- throttling -------------------------------------------------------------------------------


def test_order_creation_is_throttled_per_client_address(bank, post_order, phone_product, monkeypatch):
    from orders.api.views import OrderCreateThrottle

    # DRF reads the rates into the class once: patch the class, and monkeypatch puts the rates of
    # the settings back afterwards (restoring them from api_settings here would keep 2/min for
    # every later test of the process).
    monkeypatch.setattr(OrderCreateThrottle, "THROTTLE_RATES", {"order_create": "2/min"})
    answers = [post_order(order_body(phone_product), REMOTE_ADDR="10.0.0.1") for _ in range(3)]
    other = post_order(order_body(phone_product), REMOTE_ADDR="10.0.0.2").status_code
    assert [answer.status_code for answer in answers] == [201, 201, 429] and other == 201
    assert assert_error_shape(answers[-1], 429, "throttled") == []
    assert int(answers[-1].headers["Retry-After"]) > 0  # documented as required in the schema


def test_init_is_recorded_as_started_before_it_leaves_so_a_takeover_asks_checkorder_first(
    bank, post_order, phone_product, monkeypatch
):
    from orders.tbank.client import TBankClient

    seen = []
    real_init = TBankClient.init

    def init(self, **kwargs):
        seen.extend(TBankCall.objects.filter(method="Init").values_list("outcome", flat=True))
        return real_init(self, **kwargs)

    monkeypatch.setattr(TBankClient, "init", init)
    assert post_order(order_body(phone_product), key="lease-1").status_code == 201

    assert seen == [TBankCallOutcome.UNKNOWN]  # committed before the call: a takeover would see it
    (call,) = TBankCall.objects.filter(method="Init")
    assert call.outcome == TBankCallOutcome.OK and call.payment_id


def test_a_checkout_that_outlives_its_lease_leaves_one_live_payment_link(bank, post_order, phone_product, monkeypatch):
    from orders.tbank.client import TBankClient

    real_init = TBankClient.init
    answers, calls = [], []

    def slow_init(self, **kwargs):
        calls.append(1)
        answer = real_init(self, **kwargs)
        if len(calls) == 1:
            # Still waiting for the bank when the lease runs out: the client repeats the request.
            IdempotencyKey.objects.update(init_started_at=timezone.now() - timedelta(hours=1))
            settle_lost_inits()
            answers.append(post_order(order_body(phone_product), key="lease-2"))
        return answer

    monkeypatch.setattr(TBankClient, "init", slow_init)
    first = post_order(order_body(phone_product), key="lease-2")

    (takeover,) = answers
    assert first.status_code == takeover.status_code == 201
    assert first.json()["payment_url"] == takeover.json()["payment_url"]
    live = [p for p in bank.payments.values() if p.status not in ("CANCELED",)]
    assert len(live) == 1 and live[0].payment_id in first.json()["payment_url"]
    assert [c["PaymentId"] for c in bank.calls("Cancel")] == [
        p.payment_id for p in bank.payments.values() if p.status == "CANCELED"
    ]


def test_a_takeover_before_the_bank_registered_the_first_init_starts_nothing(
    bank, post_order, phone_product, monkeypatch
):
    from orders.tbank.client import TBankClient

    real_init = TBankClient.init
    answers = []

    def init_reaching_the_bank_late(self, **kwargs):
        if not answers:
            # The lease ran out before this Init reached the bank: the client repeats the request.
            IdempotencyKey.objects.update(init_started_at=timezone.now() - timedelta(hours=1))
            answers.append(post_order(order_body(phone_product), key="lease-3"))
        return real_init(self, **kwargs)

    monkeypatch.setattr(TBankClient, "init", init_reaching_the_bank_late)
    first = post_order(order_body(phone_product), key="lease-3")

    (takeover,) = answers
    assert takeover.status_code == 503 and takeover.json()["code"] == "payment_unavailable"
    assert first.status_code == 201
    # CheckOrder was not asked too early (it would have found nothing and a second Init followed).
    assert [name for name, _ in bank.requests] == ["Init"]
    assert len(bank.payments) == 1 and first.json()["payment_url"].endswith(next(iter(bank.payments)))
