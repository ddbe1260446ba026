"""The T-Bank methods the shop calls: Init, GetState, CheckOrder and Cancel.

Every call is a signed JSON POST to `<TBANK_API_URL><Method>`; the bank reports errors in
the body of an HTTP 200 answer (`Success: false`, `ErrorCode` as a string). Three outcomes
are kept apart because money depends on it:

* the bank answered `Success: true`: the method's answer comes back;
* the bank answered and refused (`Success: false`): TBankRefused, nothing happened there;
* no readable answer (timeout, connection error, 5xx, a body that is not the bank's):
  TBankUnavailable — the operation *may* have happened, so the caller must find out (GetState,
  CheckOrder) before doing it again.

The terminal password only ever leaves this process inside a Token; it is never logged,
stored or put in an exception. Requests and answers kept for audit go through `redacted()`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_variables

from orders.tbank.signing import compute_token

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://securepay.tinkoff.ru/v2/"


class TBankError(Exception):
    """A T-Bank call that did not succeed. Never carries the terminal password."""

    def __init__(self, message: str, *, method: str, request: dict[str, Any] | None = None) -> None:
        self.method = method
        self.request = redacted(request or {})
        super().__init__(message)


class TBankUnavailable(TBankError):
    """No readable answer: the operation may or may not have happened at the bank."""


class TBankRefused(TBankError):
    """The bank answered Success=false: the operation did not happen."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        error_code: str,
        bank_message: str = "",
        details: str = "",
        answer: dict[str, Any] | None = None,
        request: dict[str, Any] | None = None,
    ) -> None:
        self.error_code = error_code
        self.bank_message = bank_message
        self.details = details
        self.answer = redacted(answer or {})
        super().__init__(message, method=method, request=request)


class TBankNotConfigured(TBankError):
    """TBANK_TERMINAL_KEY / TBANK_PASSWORD are missing."""


@dataclass(frozen=True)
class InitAnswer:
    payment_id: str
    payment_url: str
    status: str
    amount: int | None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentState:
    """One payment as GetState (or CheckOrder) reports it."""

    payment_id: str
    status: str
    amount: int | None
    order_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelAnswer:
    payment_id: str
    status: str
    original_amount: int | None
    new_amount: int | None
    external_request_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def redacted(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of a request or answer fit for logs and audit records: no Token, no Password."""
    return {key: ("***" if key in ("Token", "Password") else value) for key, value in payload.items()}


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _as_id(value: Any) -> str:
    # PaymentId is a string in most answers and a number in some: always keep it as a string.
    return "" if value is None or isinstance(value, bool) else str(value)


class TBankClient:
    """Signs and sends T-Bank acquiring API calls. Thread-safe: one HTTP session per thread."""

    def __init__(self, *, terminal_key: str, password: str, base_url: str, timeout: float = 15.0) -> None:
        self.terminal_key = terminal_key
        self._password = password
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        self._local = threading.local()

    def __repr__(self) -> str:  # the password stays out of tracebacks and debug output
        return f"TBankClient(terminal_key={self.terminal_key!r}, base_url={self.base_url!r})"

    @classmethod
    def from_settings(cls) -> TBankClient:
        missing = [name for name in ("TBANK_TERMINAL_KEY", "TBANK_PASSWORD") if not getattr(settings, name, "")]
        if missing:
            raise TBankNotConfigured(
                f"{' and '.join(missing)} must be set to call T-Bank (terminal key and password from the "
                "T-Bank merchant portal).",
                method="",
            )
        return cls(
            terminal_key=settings.TBANK_TERMINAL_KEY,
            password=settings.TBANK_PASSWORD,
            base_url=getattr(settings, "TBANK_API_URL", "") or DEFAULT_API_URL,
            timeout=float(getattr(settings, "TBANK_TIMEOUT_SECONDS", 15.0)),
        )

    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    @sensitive_variables("payload")
    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`payload` with TerminalKey and the Token the bank expects; None values are dropped."""
        signed = {key: value for key, value in payload.items() if value is not None and key != "Token"}
        signed["TerminalKey"] = self.terminal_key
        signed["Token"] = compute_token(signed, self._password)
        return signed

    @sensitive_variables("signed")
    def call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one signed method call; the answer's body when Success is true.

        Raises TBankRefused (the bank said no) or TBankUnavailable (outcome unknown).
        """
        signed = self.sign(payload)
        url = f"{self.base_url}{method}"
        try:
            response = self._session.post(url, json=signed, timeout=(min(5.0, self.timeout), self.timeout))
        except requests.Timeout:
            raise TBankUnavailable(
                f"T-Bank {method}: no answer within {self.timeout:g} s; the outcome is unknown.",
                method=method,
                request=signed,
            ) from None
        except requests.RequestException as exc:
            raise TBankUnavailable(
                f"T-Bank {method}: could not reach {self.base_url} ({type(exc).__name__}); the outcome is unknown.",
                method=method,
                request=signed,
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "Success" not in answer:
            raise TBankUnavailable(
                f"T-Bank {method}: HTTP {response.status_code} without a readable answer; the outcome is unknown.",
                method=method,
                request=signed,
            )
        if answer.get("Success") is not True:
            error_code = str(answer.get("ErrorCode", "")).strip()
            bank_message = str(answer.get("Message") or "")
            details = str(answer.get("Details") or "")
            raise TBankRefused(
                f"T-Bank {method} refused: ErrorCode {error_code or '?'}"
                + (f" ({bank_message})" if bank_message else "")
                + (f": {details}" if details else ""),
                method=method,
                error_code=error_code,
                bank_message=bank_message,
                details=details,
                answer=answer,
                request=signed,
            )
        return redacted(answer)

    # --- methods -------------------------------------------------------------------------

    def init(
        self,
        *,
        amount: int,
        order_id: str,
        description: str = "",
        notification_url: str = "",
        success_url: str = "",
        fail_url: str = "",
        redirect_due_date: str = "",
        language: str = "",
        data: dict[str, str] | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> InitAnswer:
        """Create a payment; the answer carries the PaymentURL to send the customer to."""
        payload: dict[str, Any] = {"Amount": amount, "OrderId": order_id}
        optional = {
            "Description": description[:140],
            "NotificationURL": notification_url,
            "SuccessURL": success_url,
            "FailURL": fail_url,
            "RedirectDueDate": redirect_due_date,
            "Language": language,
        }
        payload.update({key: value for key, value in optional.items() if value})
        if data:
            payload["DATA"] = data
        if receipt:
            payload["Receipt"] = receipt
        answer = self.call("Init", payload)
        payment_id, payment_url = _as_id(answer.get("PaymentId")), str(answer.get("PaymentURL") or "")
        if not payment_id or not payment_url:
            raise TBankUnavailable(
                "T-Bank Init answered Success without PaymentId or PaymentURL; the outcome is unknown.",
                method="Init",
                request=payload,
            )
        return InitAnswer(
            payment_id=payment_id,
            payment_url=payment_url,
            status=str(answer.get("Status") or ""),
            amount=_as_int(answer.get("Amount")),
            raw=answer,
        )

    def get_state(self, *, payment_id: str) -> PaymentState:
        answer = self.call("GetState", {"PaymentId": str(payment_id)})
        return PaymentState(
            payment_id=_as_id(answer.get("PaymentId")) or str(payment_id),
            status=str(answer.get("Status") or ""),
            amount=_as_int(answer.get("Amount")),
            order_id=_as_id(answer.get("OrderId")),
            raw=answer,
        )

    def check_order(self, *, order_id: str) -> list[PaymentState]:
        """Every payment the bank has for `order_id` (none: an empty list)."""
        try:
            answer = self.call("CheckOrder", {"OrderId": order_id})
        except TBankRefused as exc:
            if exc.error_code == "335":  # OrderId unknown at this terminal: no payment was ever created
                return []
            raise
        payments = answer.get("Payments") or []
        return [
            PaymentState(
                payment_id=_as_id(item.get("PaymentId")),
                status=str(item.get("Status") or ""),
                amount=_as_int(item.get("Amount")),
                order_id=order_id,
                raw=dict(item),
            )
            for item in payments
            if isinstance(item, dict)
        ]

    def cancel(
        self,
        *,
        payment_id: str,
        amount: int | None = None,
        receipt: dict[str, Any] | None = None,
        external_request_id: str = "",
    ) -> CancelAnswer:
        """Refund captured money (or release a hold). `amount=None` cancels in full.

        With `external_request_id` the bank recognises a repeat and returns the state of the
        first Cancel instead of refunding again.
        """
        payload: dict[str, Any] = {"PaymentId": str(payment_id)}
        if amount is not None:
            payload["Amount"] = amount
        if receipt:
            payload["Receipt"] = receipt
        if external_request_id:
            payload["ExternalRequestId"] = external_request_id
        answer = self.call("Cancel", payload)
        return CancelAnswer(
            payment_id=_as_id(answer.get("PaymentId")) or str(payment_id),
            status=str(answer.get("Status") or ""),
            original_amount=_as_int(answer.get("OriginalAmount")),
            new_amount=_as_int(answer.get("NewAmount")),
            external_request_id=str(answer.get("ExternalRequestId") or ""),
            raw=answer,
        )


#: The client TBANK_SANDBOX selects (development only; it refuses to work unless DEBUG).
SANDBOX_CLIENT = "orders.tbank.sandbox.SandboxTBankClient"


def tbank_client() -> TBankClient:
    """The client every caller uses: the real bank, or the local sandbox when TBANK_SANDBOX is on.

    The one place the choice is made, so no code path can talk to the real bank in sandbox
    mode or to the sandbox in production (the sandbox also refuses to work unless DEBUG).
    """
    if getattr(settings, "TBANK_SANDBOX", False):
        # By name, as Django names its backends: the sandbox client is built on this module.
        return import_string(SANDBOX_CLIENT).from_settings()
    return TBankClient.from_settings()
