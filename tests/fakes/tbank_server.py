"""A small fake T-Bank acquiring server for tests: Init, GetState, CheckOrder and Cancel over real
HTTP, payments it can "pay" (sending signed notifications to the shop's NotificationURL), and
faults to inject (refusals, lost answers, HTTP 500).

It checks what the real bank checks and tests care about: the Token of every request, Amount
= sum of the receipt's items, Price x Quantity per item, refunds never above what is left,
and Cancel's ExternalRequestId idempotency. Every request is recorded (Token masked).

In tests: `with FakeTBank(password=...) as bank: settings.TBANK_API_URL = bank.api_url`.
By hand: `python -m tests.fakes.tbank_server --port 8100 --terminal-key K --password P`, then
point TBANK_API_URL at http://127.0.0.1:8100/v2/ and open a PaymentURL to pay.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests

from orders.tbank.signing import compute_token, sign_notification


@dataclass
class FakePayment:
    payment_id: str
    order_id: str
    amount: int
    notification_url: str = ""
    success_url: str = ""
    fail_url: str = ""
    status: str = "NEW"
    refunded: int = 0
    receipt: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    cancels: dict[str, dict[str, Any]] = field(default_factory=dict)  # ExternalRequestId -> answer

    @property
    def remaining(self) -> int:
        return self.amount - self.refunded


@dataclass
class Fault:
    kind: str  # "refuse", "lose_answer" (do it, answer nothing in time), "http500" (do nothing), "http500_after"
    error_code: str = "9999"
    message: str = "Внутренняя ошибка системы"
    delay: float = 0.0


class FakeTBank:
    def __init__(
        self, *, terminal_key: str = "TestTerminalDEMO", password: str = "test-terminal-password", latency: float = 0.0
    ) -> None:
        self.terminal_key = terminal_key
        self.password = password
        # Seconds every API call waits before its answer (a slow bank; bench/flash.py).
        self.latency = latency
        # When set to an Event, every API call waits for it before answering (a bank that keeps
        # the shop waiting until the test says so; at most 60 s).
        self.hold: threading.Event | None = None
        self.waiting = 0  # API calls waiting on `hold` right now
        self.payments: dict[str, FakePayment] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.notifications: list[tuple[dict[str, Any], int, str]] = []  # (payload, http status, body)
        self.faults: dict[str, list[Fault]] = {}
        self.notify_on_cancel = True
        self._ids = itertools.count(7000000001)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeTBank:
        bank = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                bank._handle_post(self)

            def do_GET(self) -> None:
                bank._handle_get(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeTBank:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server, "start() the fake bank first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v2/"

    # --- test controls ---------------------------------------------------------------------

    def inject(self, method: str, fault: Fault) -> None:
        """The next call of `method` meets `fault` (queued: inject twice for two calls)."""
        with self._lock:
            self.faults.setdefault(method, []).append(fault)

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [body for name, body in self.requests if name == method]

    def payment_for(self, order_id: str) -> FakePayment:
        matches = [payment for payment in self.payments.values() if payment.order_id == order_id]
        assert matches, f"no payment for OrderId {order_id}"
        return matches[-1]

    def pay(self, payment_id: str, *, success: bool = True, notify: bool = True) -> list[tuple[int, str]]:
        """The customer pays (or is declined): the status changes and the shop is notified."""
        payment = self.payments[str(payment_id)]
        statuses = ["AUTHORIZED", "CONFIRMED"] if success else ["REJECTED"]
        payment.status = statuses[-1]
        if not notify:
            return []
        return [self.notify(payment, status) for status in statuses]

    def notify(self, payment: FakePayment, status: str, **extra) -> tuple[int, str]:
        """POST a notification signed as the bank signs it; returns (HTTP status, body)."""
        payload = {
            "TerminalKey": self.terminal_key,
            "OrderId": payment.order_id,
            "Success": status not in ("REJECTED", "AUTH_FAIL"),
            "Status": status,
            "PaymentId": int(payment.payment_id),
            "ErrorCode": "0",
            "Amount": payment.remaining if status in ("REFUNDED", "PARTIAL_REFUNDED") else payment.amount,
            "CardId": 322264,
            "Pan": "430000******0777",
            "ExpDate": "1130",
            **extra,
        }
        signed = sign_notification(payload, self.password)
        try:
            response = requests.post(payment.notification_url, json=signed, timeout=15)
            result = (response.status_code, response.text)
        except requests.RequestException as exc:
            result = (0, type(exc).__name__)
        with self._lock:
            self.notifications.append((signed, *result))
        return result

    # --- HTTP ------------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any] | str) -> None:
        data = (json.dumps(body, ensure_ascii=False) if isinstance(body, dict) else body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/html")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _handle_get(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        if url.path.startswith("/pay/"):
            payment_id = url.path.rsplit("/", 1)[-1]
            action = parse_qs(url.query).get("action", [""])[0]
            payment = self.payments.get(payment_id)
            if payment is None:
                return self._answer(handler, 404, "<h1>No such payment</h1>")
            if action in ("pay", "decline"):
                self.pay(payment_id, success=action == "pay")
                target = payment.success_url if action == "pay" else payment.fail_url
                handler.send_response(302)
                handler.send_header("Location", target or "/")
                handler.end_headers()
                return
            return self._answer(
                handler,
                200,
                f"<h1>Fake T-Bank</h1><p>Order {payment.order_id}: {payment.amount / 100:.2f} RUB</p>"
                f'<a id="pay" href="?action=pay">Pay</a> <a id="decline" href="?action=decline">Decline</a>',
            )
        self._answer(handler, 404, "<h1>Not found</h1>")

    def _handle_post(self, handler: BaseHTTPRequestHandler) -> None:
        method = urlparse(handler.path).path.rstrip("/").rsplit("/", 1)[-1]
        length = int(handler.headers.get("Content-Length") or 0)
        try:
            body = json.loads(handler.rfile.read(length) or b"{}")
        except ValueError:
            return self._answer(handler, 400, {"Success": False, "ErrorCode": "1", "Message": "Bad JSON"})
        with self._lock:
            self.requests.append((method, {k: ("***" if k == "Token" else v) for k, v in body.items()}))
            fault = self.faults.get(method, []) and self.faults[method].pop(0)
        if self.latency:
            time.sleep(self.latency)
        hold = self.hold
        if hold is not None:
            with self._lock:
                self.waiting += 1
            hold.wait(timeout=60)
            with self._lock:
                self.waiting -= 1
        if fault and fault.kind == "http500":
            return self._answer(handler, 500, "<h1>Internal Server Error</h1>")
        if fault and fault.kind == "refuse":
            return self._answer(
                handler, 200, {"Success": False, "ErrorCode": fault.error_code, "Message": fault.message}
            )
        if body.get("TerminalKey") != self.terminal_key or body.get("Token") != compute_token(body, self.password):
            answer = {"Success": False, "ErrorCode": "204", "Message": "Неверный токен"}
        else:
            handler_fn = getattr(self, f"_method_{method}", None)
            if handler_fn is None:
                answer = {"Success": False, "ErrorCode": "1", "Message": f"Unknown method {method}"}
            else:
                with self._lock:
                    answer = handler_fn(body)
        answer = {"TerminalKey": self.terminal_key, **answer}
        if fault and fault.kind == "lose_answer":
            time.sleep(fault.delay)  # the operation happened; the answer comes too late to be read
        if fault and fault.kind == "http500_after":
            return self._answer(handler, 502, "<h1>Bad Gateway</h1>")
        self._answer(handler, 200, answer)

    @staticmethod
    def _refusal(code: str, message: str, details: str = "") -> dict[str, Any]:
        return {"Success": False, "ErrorCode": code, "Message": message, "Details": details}

    def _check_receipt(self, receipt: dict[str, Any] | None, amount: int) -> dict[str, Any] | None:
        if receipt is None:
            return None
        items = receipt.get("Items") or []
        for item in items:
            if item.get("Amount") != item.get("Price", 0) * item.get("Quantity", 0):
                return self._refusal(
                    "334", "Неверные параметры", f"Item {item.get('Name')}: Amount != Price x Quantity"
                )
        if sum(item.get("Amount", 0) for item in items) != amount:
            return self._refusal("308", "Неверные параметры", "Receipt items total differs from Amount")
        if not (receipt.get("Email") or receipt.get("Phone")):
            return self._refusal("329", "Неверные параметры", "Email or Phone required")
        return None

    def _method_Init(self, body: dict[str, Any]) -> dict[str, Any]:
        amount = body.get("Amount")
        if not isinstance(amount, int) or amount <= 0 or not body.get("OrderId"):
            return self._refusal("2", "Не переданы обязательные параметры")
        problem = self._check_receipt(body.get("Receipt"), amount)
        if problem:
            return problem
        payment = FakePayment(
            payment_id=str(next(self._ids)),
            order_id=str(body["OrderId"]),
            amount=amount,
            notification_url=body.get("NotificationURL", ""),
            success_url=body.get("SuccessURL", ""),
            fail_url=body.get("FailURL", ""),
            receipt=body.get("Receipt"),
            data=body.get("DATA"),
        )
        self.payments[payment.payment_id] = payment
        return {
            "Success": True,
            "ErrorCode": "0",
            "Status": "NEW",
            "PaymentId": payment.payment_id,
            "OrderId": payment.order_id,
            "Amount": amount,
            "PaymentURL": f"{self.base_url}/pay/{payment.payment_id}",
        }

    def _method_GetState(self, body: dict[str, Any]) -> dict[str, Any]:
        payment = self.payments.get(str(body.get("PaymentId")))
        if payment is None:
            return self._refusal("255", "Платеж не найден")
        return {
            "Success": True,
            "ErrorCode": "0",
            "Status": payment.status,
            "PaymentId": payment.payment_id,
            "OrderId": payment.order_id,
            "Amount": payment.remaining,
        }

    def _method_CheckOrder(self, body: dict[str, Any]) -> dict[str, Any]:
        order_id = str(body.get("OrderId"))
        payments = [payment for payment in self.payments.values() if payment.order_id == order_id]
        if not payments:
            return self._refusal("335", "OrderId не найден")
        return {
            "Success": True,
            "ErrorCode": "0",
            "OrderId": order_id,
            "Payments": [
                {"PaymentId": p.payment_id, "Amount": p.amount, "Status": p.status, "Success": "true", "ErrorCode": 0}
                for p in payments
            ],
        }

    def _method_Cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        payment = self.payments.get(str(body.get("PaymentId")))
        if payment is None:
            return self._refusal("255", "Платеж не найден")
        external_id = str(body.get("ExternalRequestId") or "")
        if external_id and external_id in payment.cancels:
            # A repeat: the state of the payment, nothing refunded again.
            return {**payment.cancels[external_id], "Status": payment.status, "NewAmount": payment.remaining}
        if payment.status in ("NEW", "FORM_SHOWED"):
            # Cancel of an unpaid payment (reference: NEW -> CANCELED): no money moves, Amount ignored.
            payment.status = "CANCELED"
            return {
                "Success": True,
                "ErrorCode": "0",
                "Status": "CANCELED",
                "PaymentId": payment.payment_id,
                "OrderId": payment.order_id,
                "OriginalAmount": payment.amount,
                "NewAmount": 0,
                "ExternalRequestId": external_id,
            }
        if payment.status not in ("CONFIRMED", "PARTIAL_REFUNDED"):
            return self._refusal("100", "Платеж уже отменен" if payment.status == "REFUNDED" else "Неверный статус")
        amount = body.get("Amount", payment.remaining)
        if not isinstance(amount, int) or amount <= 0:
            return self._refusal("326", "Неверная сумма")
        if amount > payment.remaining:
            return self._refusal("330", "Сумма больше исходной транзакции")
        if amount < payment.remaining:
            problem = self._check_receipt(body.get("Receipt"), amount)
            if problem:
                return problem
            if payment.receipt is not None and body.get("Receipt") is None:
                return self._refusal("309", "Чек не должен быть пустым")
        original = payment.remaining
        payment.refunded += amount
        payment.status = "REFUNDED" if payment.remaining == 0 else "PARTIAL_REFUNDED"
        answer = {
            "Success": True,
            "ErrorCode": "0",
            "Status": payment.status,
            "PaymentId": payment.payment_id,
            "OrderId": payment.order_id,
            "OriginalAmount": original,
            "NewAmount": payment.remaining,
            "ExternalRequestId": external_id,
        }
        if external_id:
            payment.cancels[external_id] = answer
        if self.notify_on_cancel and payment.notification_url:
            status = payment.status
            threading.Thread(target=self.notify, args=(payment, status), daemon=True).start()
        return answer


def main() -> None:  # pragma: no cover - a manual tool
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--terminal-key", default="DemoTerminal")
    parser.add_argument("--password", default="demo-password-change-me")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="Wait before every API answer (a slow bank).")
    args = parser.parse_args()
    bank = FakeTBank(terminal_key=args.terminal_key, password=args.password, latency=args.delay_ms / 1000)
    bank.start(args.port)
    print(f"Fake T-Bank on {bank.api_url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        bank.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
