"""`manage.py simulate_payment ORDER_ID`: send the webhook a notification signed as T-Bank signs it.

For development and demos: it POSTs to a running server (default http://127.0.0.1:8000) with
the TBANK_TERMINAL_KEY / TBANK_PASSWORD of this configuration, and prints the answer and
how long the webhook took.
"""

from __future__ import annotations

import json
import random
import time

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from orders.models import Order
from orders.tbank import sign_notification


def _known_payment_id(value: str) -> int | str | None:
    # T-Bank sends PaymentId as a number; an id stored from elsewhere may not be one.
    if not value:
        return None
    return int(value) if value.isdigit() else value


class Command(BaseCommand):
    help = "Send a signed T-Bank notification for an order to the webhook of a running server."

    def add_arguments(self, parser) -> None:
        parser.add_argument("order_id", metavar="ORDER", help="The order's number (its public id) or its database id.")
        parser.add_argument("--status", default="CONFIRMED", help="Bank status to send (default CONFIRMED).")
        parser.add_argument("--amount", type=int, help="Amount in kopecks (default: the order's amount).")
        parser.add_argument("--payment-id", type=int, help="PaymentId (default: a random one).")
        parser.add_argument("--url", default="http://127.0.0.1:8000/api/payments/tbank/notification")

    def handle(
        self, *args, order_id: str, status: str, amount: int | None, payment_id: int | None, url: str, **options
    ) -> None:
        if not settings.TBANK_TERMINAL_KEY or not settings.TBANK_PASSWORD:
            raise CommandError(_("Set TBANK_TERMINAL_KEY and TBANK_PASSWORD (see .env.example) to sign notifications."))
        order = Order.objects.filter(public_id=order_id).first()
        if order is None and order_id.isdigit():
            order = Order.objects.filter(pk=int(order_id)).first()
        if order is None:
            raise CommandError(
                _("Order %(order)s does not exist: give the order's number (its public id) or its database id.")
                % {"order": order_id}
            )
        payload = {
            "TerminalKey": settings.TBANK_TERMINAL_KEY,
            "OrderId": order.tbank_order_id,
            "Success": status not in {"REJECTED", "CANCELED", "DEADLINE_EXPIRED"},
            "Status": status,
            "PaymentId": payment_id or _known_payment_id(order.payment_id) or random.randint(10**6, 10**9),
            "ErrorCode": "0",
            "Amount": order.amount_kopecks if amount is None else amount,
            "CardId": 322264,
            "Pan": "430000******0777",
            "ExpDate": "1130",
        }
        body = json.dumps(sign_notification(payload, settings.TBANK_PASSWORD))
        started = time.perf_counter()
        try:
            response = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=15)
        except requests.RequestException as exc:
            raise CommandError(
                _("Could not reach %(url)s: %(error)s. Is the server running (make run)?") % {"url": url, "error": exc}
            ) from exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.stdout.write(
            _("%(status)s for order %(order)s -> HTTP %(code)s %(body)s in %(ms).1f ms")
            % {
                "status": status,
                "order": order.public_id,
                "code": response.status_code,
                "body": repr(response.text),
                "ms": elapsed_ms,
            }
        )
        if response.status_code != 200:
            raise CommandError(_("The webhook did not accept the notification."))
