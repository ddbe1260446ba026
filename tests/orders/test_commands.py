"""The development commands: simulate_payment (signs like T-Bank) and load_demo_data (DEBUG only)."""

from __future__ import annotations

import json
from io import StringIO
from types import SimpleNamespace

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from orders import tbank
from orders.models import Order, Product
from orders.state import OrderStatus


@pytest.fixture
def captured_post(monkeypatch):
    """Patch requests.post: record each call and answer like the webhook (200 OK by default)."""
    calls = []
    answer = SimpleNamespace(status_code=200, text="OK")

    def post(url, *, data, headers, timeout):
        calls.append({"url": url, "body": json.loads(data), "raw": data, "headers": headers, "timeout": timeout})
        return answer

    monkeypatch.setattr(requests, "post", post)
    return SimpleNamespace(calls=calls, answer=answer)


def simulate(*args) -> str:
    out = StringIO()
    call_command("simulate_payment", *map(str, args), stdout=out)
    return out.getvalue()


def test_simulate_payment_signs_like_the_bank(order_factory, captured_post, settings):
    order = order_factory(quantities=(2,), price=15000)

    out = simulate(order.pk, "--payment-id", 555)

    (call,) = captured_post.calls
    body = call["body"]
    assert call["url"] == "http://127.0.0.1:8000/api/payments/tbank/notification"
    assert call["headers"] == {"Content-Type": "application/json"}
    assert (body["TerminalKey"], body["OrderId"], body["Status"], body["Amount"], body["PaymentId"]) == (
        settings.TBANK_TERMINAL_KEY,
        order.public_id,
        "CONFIRMED",
        30000,
        555,
    )
    assert body["Success"] is True
    # The token is the one the webhook verifies: recomputed independently of the command.
    assert tbank.token_is_valid(tbank.parse_notification(call["raw"].encode()), settings.TBANK_PASSWORD)
    assert not tbank.token_is_valid(body, "another-password")
    assert settings.TBANK_PASSWORD not in call["raw"]
    assert f"CONFIRMED for order {order.public_id} -> HTTP 200 'OK' in " in out


def test_simulate_payment_takes_the_order_number_customers_see(order_factory, captured_post):
    order = order_factory()
    simulate(order.public_id)
    assert captured_post.calls[0]["body"]["OrderId"] == order.public_id
    with pytest.raises(CommandError, match="public id"):
        simulate("no-such-order")


def test_simulate_payment_is_accepted_by_the_real_webhook(order_factory, client, monkeypatch):
    order = order_factory()

    def post(url, *, data, headers, timeout):
        response = client.post("/api/payments/tbank/notification", data=data, content_type=headers["Content-Type"])
        return SimpleNamespace(status_code=response.status_code, text=response.content.decode())

    monkeypatch.setattr(requests, "post", post)
    simulate(order.pk)

    assert Order.objects.get(pk=order.pk).status == OrderStatus.PAID


@pytest.mark.parametrize(("status", "success"), [("REJECTED", False), ("AUTHORIZED", True), ("REFUNDED", True)])
def test_simulate_payment_other_statuses_and_amount(order_factory, captured_post, settings, status, success):
    order = order_factory()
    simulate(order.pk, "--status", status, "--amount", 1, "--url", "http://shop.test/hook")
    (call,) = captured_post.calls
    assert call["url"] == "http://shop.test/hook"
    assert (call["body"]["Status"], call["body"]["Success"], call["body"]["Amount"]) == (status, success, 1)
    assert tbank.token_is_valid(call["body"], settings.TBANK_PASSWORD)


def test_simulate_payment_reuses_the_stored_payment_id(paid_order_factory, captured_post):
    order = paid_order_factory(payment_id="8742591")
    simulate(order.pk, "--status", "REFUNDED")
    assert captured_post.calls[0]["body"]["PaymentId"] == 8742591


def test_simulate_payment_fails_when_the_webhook_refuses(order_factory, captured_post):
    captured_post.answer.status_code, captured_post.answer.text = 403, "Token does not match."
    with pytest.raises(CommandError, match="did not accept"):
        simulate(order_factory().pk)


def test_simulate_payment_explains_an_unreachable_server(order_factory, monkeypatch):
    def post(*args, **kwargs):
        raise requests.ConnectionError("refused")

    monkeypatch.setattr(requests, "post", post)
    with pytest.raises(CommandError, match=r"Could not reach .* Is the server running \(make run\)\?"):
        simulate(order_factory().pk)


def test_simulate_payment_needs_credentials_and_an_order(db, settings, captured_post):
    with pytest.raises(CommandError, match="Order 4040 does not exist"):
        simulate(4040)
    settings.TBANK_PASSWORD = ""
    with pytest.raises(CommandError, match="Set TBANK_TERMINAL_KEY and TBANK_PASSWORD"):
        simulate(4040)
    assert captured_post.calls == []


# --- load_demo_data ----------------------------------------------------------------------------


def test_load_demo_data_refuses_without_debug(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="development only; set DJANGO_DEBUG=true"):
        call_command("load_demo_data", stdout=StringIO())
    assert not Product.objects.exists()
    assert not Order.objects.exists()
    assert not get_user_model().objects.exists()


def test_load_demo_data_in_debug_is_repeatable_and_keeps_the_admin_password(db, settings, tmp_path):
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    out, again, reset = StringIO(), StringIO(), StringIO()

    call_command("load_demo_data", "--orders", 4, stdout=out)
    call_command("load_demo_data", "--orders", 4, stdout=again)

    assert Product.objects.count() == 4
    assert Order.objects.filter(status=OrderStatus.NEW).count() == 4
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    printed = out.getvalue()
    first_password = printed.split("password: ")[1].split(" ")[0]
    # A second run (every `make run`) keeps the password, so staff stay logged in, and says it again.
    assert f"kept; password: {first_password}" in again.getvalue()
    assert admin.check_password(first_password)
    assert (tmp_path / "admin-password.txt").read_text().strip() == first_password
    call_command("load_demo_data", "--reset-admin-password", stdout=reset)
    new_password = reset.getvalue().split("password: ")[1].split(" ")[0]
    admin.refresh_from_db()
    assert new_password != first_password and admin.check_password(new_password)
    # What it prints works from the project folder, outside an activated virtualenv.
    assert "Pay one: .venv/bin/python manage.py simulate_payment" in printed
    # A Russian shop's catalogue: roubles, recipients a Russian customer has.
    assert all(product.price_kopecks % 100 == 0 for product in Product.objects.all())
    assert not Product.objects.filter(recipient_pattern__startswith="08").exists()
    for order in Order.objects.all():
        assert order.amount_kopecks == sum(i.unit_price_kopecks * i.quantity for i in order.items.all())


# --- in Russian, the shop's default language ------------------------------------------------------


def test_the_commands_speak_russian_by_default(order_factory, captured_post, settings, tmp_path):
    from django.utils import translation

    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    order = order_factory()
    with translation.override("ru"):
        paid = simulate(order.public_id)
        demo = StringIO()
        call_command("load_demo_data", "--orders", "1", stdout=demo)
        purge = StringIO()
        call_command("purge_audit", "--older-than", "180d", "--dry-run", stdout=purge)
        with pytest.raises(CommandError, match="не менее 1"):
            call_command("purge_audit", "--older-than", "180d", "--batch-size", "0")

    assert f"CONFIRMED для заказа {order.public_id} -> HTTP 200" in paid
    assert "Демо-товаров: 4" in demo.getvalue() and "Администратор 'admin' создан" in demo.getvalue()
    assert "Пробный прогон" in purge.getvalue() and "Ничего не удалено (--dry-run)." in purge.getvalue()
