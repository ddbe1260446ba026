"""A local stand-in for T-Bank, for development (TBANK_SANDBOX=true, refused unless DEBUG).

`SandboxTBankClient` answers Init, GetState, CheckOrder and Cancel like the bank, from
SandboxPayment rows (so its payments survive a restart). Init's PaymentURL opens a local page
(orders.sandbox_views) with "Pay" and "Decline"; pressing one changes the payment's status and
hands our webhook processing a notification signed with the terminal password exactly as the
bank signs it, so the rest of the shop cannot tell the sandbox from the bank.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from orders.models import SandboxPayment
from orders.tbank.client import (
    TBankClient,
    TBankNotConfigured,
    TBankRefused,
)
from orders.tbank.receipts import receipt_total

PAYABLE = ("NEW", "FORM_SHOWED")


class SandboxTBankClient(TBankClient):
    """TBankClient's interface, answered locally; nothing leaves the process."""

    @classmethod
    def from_settings(cls) -> SandboxTBankClient:
        if not settings.DEBUG:
            raise TBankNotConfigured("TBANK_SANDBOX is for development only: it needs DJANGO_DEBUG=true.", method="")
        if not settings.TBANK_TERMINAL_KEY or not settings.TBANK_PASSWORD:
            raise TBankNotConfigured(
                "TBANK_TERMINAL_KEY and TBANK_PASSWORD must be set, even in the sandbox.", method=""
            )
        return cls(terminal_key=settings.TBANK_TERMINAL_KEY, password=settings.TBANK_PASSWORD, base_url="sandbox:")

    def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_sandbox_{method}", None)
        if handler is None:
            raise TBankRefused(f"Sandbox: unknown method {method}.", method=method, error_code="1")
        answer = handler(payload)
        if not answer.get("Success"):
            raise TBankRefused(
                f"T-Bank {method} refused: ErrorCode {answer['ErrorCode']} ({answer.get('Message', '')})",
                method=method,
                error_code=answer["ErrorCode"],
                bank_message=answer.get("Message", ""),
                details=answer.get("Details", ""),
                answer=answer,
                request=payload,
            )
        return {"TerminalKey": self.terminal_key, **answer}

    @staticmethod
    def _refusal(code: str, message: str, details: str = "") -> dict[str, Any]:
        return {"Success": False, "ErrorCode": code, "Message": message, "Details": details}

    def _sandbox_Init(self, body: dict[str, Any]) -> dict[str, Any]:
        amount = body.get("Amount")
        if not isinstance(amount, int) or amount <= 0 or not body.get("OrderId"):
            return self._refusal("2", "Не переданы обязательные параметры")
        receipt = body.get("Receipt")
        if receipt is not None:
            for item in receipt.get("Items", []):
                if item["Amount"] != item["Price"] * item["Quantity"]:
                    return self._refusal("334", "Неверные параметры", "Amount != Price x Quantity")
            if receipt_total(receipt) != amount:
                return self._refusal("308", "Неверные параметры", "Receipt items total differs from Amount")
        payment = SandboxPayment.objects.create(
            payment_id=str(secrets.randbelow(9 * 10**9) + 10**9),
            order_ref=str(body["OrderId"]),
            amount_kopecks=amount,
            description=str(body.get("Description", ""))[:140],
            notification_url=body.get("NotificationURL", ""),
            success_url=body.get("SuccessURL", ""),
            fail_url=body.get("FailURL", ""),
        )
        path = reverse("tbank-sandbox-pay", kwargs={"payment_id": payment.payment_id})
        return {
            "Success": True,
            "ErrorCode": "0",
            "Status": "NEW",
            "PaymentId": payment.payment_id,
            "OrderId": payment.order_ref,
            "Amount": amount,
            "PaymentURL": f"{settings.PUBLIC_BASE_URL}{path}",
        }

    def _sandbox_GetState(self, body: dict[str, Any]) -> dict[str, Any]:
        payment = SandboxPayment.objects.filter(payment_id=str(body.get("PaymentId"))).first()
        if payment is None:
            return self._refusal("255", "Платеж не найден")
        return {
            "Success": True,
            "ErrorCode": "0",
            "Status": payment.status,
            "PaymentId": payment.payment_id,
            "OrderId": payment.order_ref,
            "Amount": payment.amount_kopecks,
        }

    def _sandbox_CheckOrder(self, body: dict[str, Any]) -> dict[str, Any]:
        payments = list(SandboxPayment.objects.filter(order_ref=str(body.get("OrderId"))))
        if not payments:
            return self._refusal("335", "OrderId не найден")
        return {
            "Success": True,
            "ErrorCode": "0",
            "OrderId": str(body.get("OrderId")),
            "Payments": [
                {
                    "PaymentId": p.payment_id,
                    "Amount": p.amount_kopecks,
                    "Status": p.status,
                    "Success": "true",
                    "ErrorCode": 0,
                }
                for p in payments
            ],
        }

    def _sandbox_Cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        """Like the bank: a NEW payment is CANCELED; a captured one gives back `Amount` (all that is
        left without it), ending PARTIAL_REFUNDED while money remains, REFUNDED when none does.
        OriginalAmount and NewAmount are what was left before and after. A repeated
        ExternalRequestId answers the current state and refunds nothing again."""
        with transaction.atomic():
            payment = (
                SandboxPayment.objects.select_for_update(no_key=True)
                .filter(payment_id=str(body.get("PaymentId")))
                .first()
            )
            if payment is None:
                return self._refusal("255", "Платеж не найден")
            remaining = payment.amount_kopecks - payment.refunded_kopecks
            request_id = str(body.get("ExternalRequestId") or "")
            if request_id and request_id in payment.cancel_request_ids:
                return self._cancel_answer(payment, original=remaining, new=remaining)
            if payment.status in PAYABLE:
                payment.status = "CANCELED"
                new = 0
            elif payment.status in ("CONFIRMED", "PARTIAL_REFUNDED"):
                amount = body.get("Amount", remaining)
                if not isinstance(amount, int) or amount <= 0:
                    return self._refusal(
                        "9999", "Неверная сумма", f"Amount {amount!r} is not a positive number of kopecks."
                    )
                if amount > remaining:
                    return self._refusal(
                        "100", "Сумма возврата больше остатка", f"Only {remaining} kopecks remain of this payment."
                    )
                payment.refunded_kopecks += amount
                new = remaining - amount
                payment.status = "PARTIAL_REFUNDED" if new else "REFUNDED"
            else:
                return self._refusal("100", "Неверный статус транзакции")
            if request_id:
                payment.cancel_request_ids = [*payment.cancel_request_ids, request_id]
            payment.save(update_fields=["status", "refunded_kopecks", "cancel_request_ids", "updated_at"])
        return self._cancel_answer(payment, original=remaining, new=new)

    @staticmethod
    def _cancel_answer(payment, *, original: int, new: int) -> dict[str, Any]:
        return {
            "Success": True,
            "ErrorCode": "0",
            "Status": payment.status,
            "PaymentId": payment.payment_id,
            "OrderId": payment.order_ref,
            "OriginalAmount": original,
            "NewAmount": new,
        }
