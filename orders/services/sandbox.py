"""The sandbox's payment page at work: the customer's Pay or Decline becomes the notifications the
bank would send (TBANK_SANDBOX, development only; the fake bank itself is orders.tbank.sandbox)."""

from __future__ import annotations

import json

from django.conf import settings
from django.db import transaction

from orders.models import SandboxPayment
from orders.services.notifications import payment_notification_process
from orders.tbank.sandbox import PAYABLE
from orders.tbank.signing import sign_notification


def sandbox_payment_decide(*, payment_id: str, pay: bool) -> str:
    """The customer presses Pay (or Decline) on the sandbox page: the payment's status changes
    and the webhook processing gets the notifications the bank would send, signed as it signs
    them. Returns the URL to send the customer to (SuccessURL / FailURL)."""
    with transaction.atomic():
        payment = SandboxPayment.objects.select_for_update(no_key=True).get(payment_id=payment_id)
        if payment.status not in PAYABLE:
            return payment.success_url if payment.status == "CONFIRMED" else payment.fail_url
        statuses = ["AUTHORIZED", "CONFIRMED"] if pay else ["REJECTED"]
        payment.status = statuses[-1]
        payment.save(update_fields=["status", "updated_at"])
    for status in statuses:
        payload = {
            "TerminalKey": settings.TBANK_TERMINAL_KEY,
            "OrderId": payment.order_ref,
            "Success": pay,
            "Status": status,
            "PaymentId": int(payment.payment_id),
            "ErrorCode": "0" if pay else "1051",
            "Amount": payment.amount_kopecks,
            "CardId": 100001,
            "Pan": "430000******0777",
            "ExpDate": "1230",
        }
        body = json.dumps(sign_notification(payload, settings.TBANK_PASSWORD)).encode()
        # In-process rather than an HTTP POST to ourselves: a single-threaded development
        # server would wait on itself. The bytes and the Token are exactly the bank's.
        payment_notification_process(body=body, remote_addr=None)
    return payment.success_url if pay else payment.fail_url
