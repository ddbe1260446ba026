"""The Digiflazz provider: prepaid top-ups through the Digiflazz buyer API.

Everything that speaks Digiflazz's protocol lives here: request signing, the answer ->
FulfillmentResult mapping (RESPONSE_CODES, the one table a maintainer edits to change how a
response code is treated), callback verification and parsing, and the small client the
operator tools (fulfillment.catalog) use for the balance and the price list.

Protocol facts this module relies on (docs/digiflazz.md has the operator's view):

* Every call is a JSON POST answered with {"data": ...}. Error answers may carry a non-2xx
  HTTP status and still hold data.rc / data.message, so the body is read whatever the status.
* /transaction with an already used ref_id returns that transaction instead of buying again:
  it is both the purchase and the documented status check. The unit's stable delivery
  reference is the ref_id, so a timeout is resolved by asking again with the same one.
* The same transaction must not be asked about twice within a minute, nor at all once it is
  90 days old (the same ref_id would then buy again): min_check_interval / max_check_age.
* The API key only ever leaves this process inside an md5 signature. It never enters a
  result, a log line or an exception message; answers are scrubbed before being returned.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import requests
from django.conf import settings
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from fulfillment.providers.base import (
    UNKNOWN_OUTCOME_CODE,
    AccountStatus,
    FailureScope,
    FulfillmentParams,
    FulfillmentProvider,
    FulfillmentResult,
    Outcome,
)
from fulfillment_site.untrusted import json_text_problem, loads_strict

logger = logging.getLogger(__name__)

STATUS_SUCCESS = "Sukses"
STATUS_PENDING = "Pending"
STATUS_FAILED = "Gagal"

RC_SUCCESS = "00"
#: Codes that mean "not final yet": the same ref_id is checked again later.
PENDING_CODES: dict[str, str] = {
    "03": "Pending at Digiflazz.",
    "99": "Pending: Digiflazz router issue, the transaction is not final yet.",
}

_R, _P = FailureScope.RETRYABLE, FailureScope.PERMANENT  # the unit
_PRODUCT, _SHOP, _C = FailureScope.PRODUCT, FailureScope.SHOP, FailureScope.CONFIGURATION
_PRICE = FailureScope.PRICE

#: rc of a failed (Gagal) transaction -> (scope, what it means and what to do). The scope says whom
#: the failure concerns, and so what the engine does (fulfillment/providers/base.py, rule 5):
#: RETRYABLE (the unit): bought again later with a new ref_id, at most FULFILLMENT_MAX_PURCHASE_ATTEMPTS times.
#: PERMANENT (the unit): cannot succeed as it is; marked failed for staff.
#: PRODUCT (this SKU): its deliveries pause; a probe purchase later tests it again.
#: PRICE (this SKU's price): its deliveries pause until the next price-list sync reprices it.
#: SHOP (the shop's account) and CONFIGURATION (the shop's setup): every delivery through Digiflazz
#: halts until the balance check or a probe shows the fault gone.
#: Units waiting on a pause or halt keep their purchase attempts. Digiflazz publishes no retry
#: advice: these are this shop's choices.
RESPONSE_CODES: dict[str, tuple[FailureScope, str]] = {
    "01": (_R, "Digiflazz timed out on this transaction; it failed and can be bought again."),
    "02": (_R, "The seller reported a failure without a specific reason; a later attempt may go through."),
    "40": (_P, "Digiflazz rejected the request payload; check the product SKU and the recipient of this item."),
    "41": (
        _C,
        "Digiflazz rejected the request signature. Set DIGIFLAZZ_API_KEY to the API key of DIGIFLAZZ_USERNAME "
        "for the mode in use: the development key with DIGIFLAZZ_TESTING=true, the production key otherwise.",
    ),
    "42": (
        _C,
        "Digiflazz does not recognise the buyer username. Set DIGIFLAZZ_USERNAME to the username shown in "
        "the Digiflazz panel.",
    ),
    "43": (
        _PRODUCT,
        "The SKU is unknown or inactive at Digiflazz; fix or deactivate the product (orders keep the SKU they "
        "were sold with).",
    ),
    "44": (_SHOP, "The Digiflazz deposit is too low; top it up (manage.py digiflazz_balance shows it)."),
    "45": (
        _C,
        "Digiflazz does not recognise this server's IP address. Add the server's public IP to the IP "
        "whitelist in the Digiflazz panel.",
    ),
    "47": (_P, "This transaction was already made at another buyer; check in the Digiflazz panel."),
    "49": (
        _P,
        "Digiflazz says this ref_id is already used by another transaction. Check in the Digiflazz panel "
        "whether this unit was delivered before retrying it.",
    ),
    "50": (_P, "Digiflazz did not find the transaction; check it in the Digiflazz panel before retrying."),
    "51": (_P, "The destination number is blocked; ask the customer for another number."),
    "52": (_P, "The number's prefix does not match the product's operator; check the recipient and the product."),
    "53": (_PRODUCT, "No seller currently offers this product."),
    "54": (_P, "Wrong destination number; ask the customer for the right recipient."),
    "55": (_PRODUCT, "The product is disrupted at the seller."),
    "56": (_PRODUCT, "A seller limit was reached (deprecated code)."),
    "57": (_P, "The destination number has the wrong number of digits; ask the customer for the right one."),
    "58": (_PRODUCT, "The product is in its cut-off period."),
    "59": (_P, "The number is outside the product's service area."),
    "60": (_P, "No bill is available for this customer number."),
    "61": (_SHOP, "The Digiflazz account has never been deposited. Make a first deposit in the Digiflazz panel."),
    "62": (_PRODUCT, "The seller is disrupted."),
    "63": (_R, "The product does not support several transactions to the same number at once."),
    "64": (_R, "Digiflazz failed to pull a deposit ticket."),
    "65": (_PRODUCT, "A seller limit was reached (deprecated code)."),
    "66": (_PRODUCT, "The seller is in its cut-off period."),
    "67": (_PRODUCT, "The seller is not verified yet."),
    "68": (_PRODUCT, "The product is out of stock."),
    "69": (
        _PRICE,
        "The seller's price is above the max_price this sale allows (its priced cost plus the tolerance). The "
        "product is paused for repricing: the next price-list sync prices it again, and staff decide for the "
        "units already sold (buy at the new cost, or refund).",
    ),
    "70": (_R, "The biller timed out."),
    "71": (_PRODUCT, "The product is unstable."),
    "72": (_P, "The customer must unregister their current package first."),
    "73": (_P, "The kWh amount is above the customer's limit."),
    "74": (_R, "The transaction was refunded by the seller."),
    "80": (_PRODUCT, "The seller has blocked this shop's account for this product."),
    "81": (
        _PRODUCT,
        "This shop's account has blocked the seller; unblock it in the Digiflazz panel or change the SKU.",
    ),
    "82": (_C, "The Digiflazz account is not verified. Complete the verification in the Digiflazz panel."),
    "83": (_SHOP, "The price list was requested too often (at most once per 5 minutes)."),
    "84": (_PRODUCT, "The nominal is not valid for this product."),
    "85": (_SHOP, "Too many transactions; Digiflazz asks to wait a minute."),
    "86": (_SHOP, "Too many PLN number checks; Digiflazz asks to wait."),
    "87": (_PRODUCT, "E-money nominals must be a multiple of 1,000; fix the product."),
    "88": (_C, "The Digiflazz account is not allowed to make this call. Contact Digiflazz support."),
}
#: Codes after which Digiflazz asks for a pause before the next transaction (seconds): the halt
#: they cause lifts by itself then.
RETRY_AFTER_SECONDS = {"83": 300.0, "85": 60.0, "86": 60.0}
#: Rate limits: they refuse the request, not the transaction it names.
RATE_LIMIT_CODES = frozenset({"83", "85", "86"})
#: Codes with which Digiflazz turns a *request* away before it looks the ref_id up (credentials,
#: IP, account, rate limits, a malformed request, an unknown SKU). Answered to a status check
#: they say nothing about the purchase, which may still go through: the check is "refused".
REQUEST_REFUSAL_CODES = frozenset({"40", "41", "42", "43", "45", "82", "88"}) | RATE_LIMIT_CODES
#: Failures that say the goods may exist elsewhere: staff check the panel before a re-buy.
REVIEW_BEFORE_REBUY_CODES = frozenset({"47", "49", "50"})
#: Halts a successful balance call disproves: it is signed with the same key and username and
#: sent from the same address as a transaction.
CLEARED_BY_A_BALANCE_CALL = frozenset({"41", "42", "45"})

#: A failed transaction with a code missing from the table: a person looks at it.
UNKNOWN_CODE_SCOPE = FailureScope.PERMANENT

_ADVICE = {
    FailureScope.CONFIGURATION: (
        " Deliveries through Digiflazz are halted (Fulfillment > Provider halts) until the periodic balance "
        "check shows this fixed; staff can also delete the halt once it is."
    ),
    FailureScope.SHOP: (
        " Deliveries through Digiflazz are halted (Fulfillment > Provider halts) until this clears; waiting "
        "units keep their purchase attempts."
    ),
    FailureScope.PRODUCT: (
        " Deliveries of this product are paused (Fulfillment > Product pauses); a purchase tests it again later."
    ),
    FailureScope.PRICE: " Deliveries of this product are paused for repricing (Fulfillment > Product pauses).",
}

DEFAULT_MIN_CHECK_INTERVAL = timedelta(seconds=60)
DEFAULT_MAX_CHECK_AGE = timedelta(days=90)


@sensitive_variables()
def sign(username: str, api_key: str, suffix: str) -> str:
    """md5(username + key + suffix): "depo" for the balance, "pricelist", or the ref_id."""
    return hashlib.md5(f"{username}{api_key}{suffix}".encode(), usedforsecurity=False).hexdigest()


def classify_failure(rc: str) -> tuple[FailureScope, str]:
    """(scope, explanation) of a failed transaction's rc, per RESPONSE_CODES."""
    if rc in RESPONSE_CODES:
        return RESPONSE_CODES[rc]
    return UNKNOWN_CODE_SCOPE, (
        f"Digiflazz answered a response code this shop does not know ({rc or 'none'}); check the message "
        "and the Digiflazz documentation, then add the code to RESPONSE_CODES in fulfillment/providers/digiflazz.py."
    )


def result_from_data(data: dict[str, Any], *, http_status: int | None = None) -> FulfillmentResult | None:
    """The FulfillmentResult a top-up answer (or callback) `data` stands for; None when it says
    nothing usable (no recognisable status or rc), which callers treat as an unknown outcome."""
    rc = str(data.get("rc") or "").strip()
    status = str(data.get("status") or "").strip().capitalize()
    theirs = str(data.get("message") or "").strip()
    raw = dict(data)
    if http_status is not None:
        raw["http_status"] = http_status
    # `status` is authoritative; `rc` alone decides when an error answer carries no status.
    if status == STATUS_SUCCESS or (not status and rc == RC_SUCCESS):
        return FulfillmentResult.delivered(
            serial=str(data.get("sn") or ""),
            code=rc or RC_SUCCESS,
            message=theirs or "Delivered",
            raw=raw,
            balance=_integer(data.get("buyer_last_saldo")),  # what is left: a probe's lift is measured by it
            price=_integer(data.get("price")),
        )
    if status == STATUS_PENDING or (not status and rc in PENDING_CODES):
        message = theirs or PENDING_CODES.get(rc, "Pending at Digiflazz.")
        return FulfillmentResult.pending(code=rc, message=f"{message} Will re-check with the same ref_id.", raw=raw)
    if status == STATUS_FAILED or (not status and rc and rc != RC_SUCCESS and rc not in PENDING_CODES):
        if not status and rc not in RESPONSE_CODES:
            return None  # an unknown code without a status is not known to be a failure
        scope, explanation = classify_failure(rc)
        message = f"{explanation} (Digiflazz rc {rc or '?'}: {theirs or 'no message'})" + _ADVICE.get(scope, "")
        return FulfillmentResult.failed(
            scope=scope,
            code=rc,
            message=message,
            raw=raw,
            retry_after=RETRY_AFTER_SECONDS.get(rc),
            balance=_integer(data.get("buyer_last_saldo")),
        )
    return None


#: Amounts outside a database's 64-bit integer are not amounts anyone could owe: read as unknown.
_AMOUNT_LIMIT = 2**63


def _integer(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if -_AMOUNT_LIMIT < number < _AMOUNT_LIMIT else None


@dataclass(frozen=True)
class Answer:
    """One Digiflazz HTTP exchange: `data` is the body's "data" member when it could be read."""

    http_status: int | None  # None: no HTTP answer at all (timeout, connection error)
    data: Any = None
    problem: str = ""  # why `data` is missing, for people

    @property
    def readable(self) -> bool:
        return self.data is not None


class DigiflazzError(Exception):
    """A Digiflazz call of the operator tools that gave no usable answer. Never carries the key."""

    def __init__(self, message: str, *, rc: str = "") -> None:
        self.rc = rc
        super().__init__(message)


class DigiflazzClient:
    """Signs and sends buyer API calls. Thread-safe: one HTTP session per thread."""

    @sensitive_variables("api_key")
    def __init__(
        self,
        *,
        username: str,
        api_key: str,
        base_url: str,
        timeout: float = 30.0,
        testing: bool = False,
        callback_url: str = "",
    ) -> None:
        self.username = username
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.testing = testing
        self.callback_url = callback_url
        self._local = threading.local()

    def __repr__(self) -> str:  # the key stays out of tracebacks and debug output
        return f"DigiflazzClient(username={self.username!r}, base_url={self.base_url!r}, testing={self.testing})"

    @classmethod
    def from_settings(cls) -> DigiflazzClient:
        errors = DigiflazzProvider.configuration_errors()
        if errors:
            raise DigiflazzError("Digiflazz is not configured: " + " ".join(errors))
        return cls(
            username=settings.DIGIFLAZZ_USERNAME.strip(),
            api_key=settings.DIGIFLAZZ_API_KEY.strip(),
            base_url=settings.DIGIFLAZZ_BASE_URL,
            timeout=float(settings.DIGIFLAZZ_TIMEOUT_SECONDS),
            testing=bool(settings.DIGIFLAZZ_TESTING),
            callback_url=getattr(settings, "DIGIFLAZZ_CALLBACK_URL", "") or "",
        )

    def sign(self, suffix: str) -> str:
        return sign(self.username, self._api_key, suffix)

    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def post(self, path: str, payload: dict[str, Any]) -> Answer:
        """Send one call; never raises for transport problems (they come back as an unreadable Answer)."""
        url = f"{self.base_url}{path}"
        try:
            response = self._session.post(url, json=payload, timeout=(min(10.0, self.timeout), self.timeout))
        except requests.Timeout:
            return Answer(None, problem=f"No answer from Digiflazz within {self.timeout:g} s")
        except requests.ConnectionError as exc:
            return Answer(None, problem=f"Could not reach Digiflazz at {self.base_url} ({type(exc).__name__})")
        except requests.RequestException as exc:
            return Answer(None, problem=f"Request to Digiflazz failed ({type(exc).__name__})")
        try:
            body = response.json()
        except ValueError:
            body = None
        data = body.get("data") if isinstance(body, dict) else None
        if data is None:
            return Answer(response.status_code, problem=f"HTTP {response.status_code} without a readable answer")
        return Answer(response.status_code, data=self.scrub(data))

    def scrub(self, value: Any) -> Any:
        """A copy of `value` without signatures and without the key anywhere in it."""
        if isinstance(value, dict):
            return {key: self.scrub(item) for key, item in value.items() if key != "sign"}
        if isinstance(value, list):
            return [self.scrub(item) for item in value]
        if isinstance(value, str) and self._api_key and self._api_key in value:
            return value.replace(self._api_key, "[redacted]")
        return value

    # --- calls ---------------------------------------------------------------------------

    def transaction_payload(self, params: FulfillmentParams) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "username": self.username,
            "buyer_sku_code": params.sku,
            "customer_no": params.recipient,
            "ref_id": params.reference,
            "sign": self.sign(params.reference),
        }
        if self.testing:
            payload["testing"] = True
        if params.max_price is not None:
            payload["max_price"] = int(params.max_price)
        if self.callback_url:
            payload["cb_url"] = self.callback_url
        return payload

    def transaction(self, params: FulfillmentParams) -> FulfillmentResult:
        """Buy, or (same ref_id) learn the state of the purchase already made."""
        answer = self.post("/transaction", self.transaction_payload(params))
        if not answer.readable:
            logger.warning("Digiflazz ref_id %s: %s; outcome unknown, will re-check", params.reference, answer.problem)
            return FulfillmentResult.pending(
                code="no_answer" if answer.http_status is None else f"http_{answer.http_status}",
                message=f"{answer.problem}; outcome unknown, will re-check with the same ref_id.",
                raw={"http_status": answer.http_status, "problem": answer.problem},
            )
        data = answer.data
        result = result_from_data(data, http_status=answer.http_status) if isinstance(data, dict) else None
        echoed = str(data.get("ref_id") or "") if isinstance(data, dict) else ""
        if result is not None and echoed and echoed != params.reference:
            result = None  # an answer about another transaction says nothing about ours
        if result is None:
            logger.warning("Digiflazz ref_id %s: unusable answer (HTTP %s)", params.reference, answer.http_status)
            raw = data if isinstance(data, dict) else {"data": data}
            return FulfillmentResult.pending(
                code=f"http_{answer.http_status}",
                message="Digiflazz's answer does not say how the transaction went; will re-check with the same ref_id.",
                raw={**raw, "http_status": answer.http_status},
            )
        return result

    def balance(self) -> int:
        """The deposit, in IDR."""
        answer = self.post("/cek-saldo", {"cmd": "deposit", "username": self.username, "sign": self.sign("depo")})
        data = self._require(answer, "balance")
        if not isinstance(data, dict) or "deposit" not in data:
            raise self._refusal(data, "balance")
        try:
            return int(data["deposit"])
        except (TypeError, ValueError):
            raise DigiflazzError(f"Digiflazz answered a deposit that is not a number: {data['deposit']!r}.") from None

    def price_list(self, *, cmd: str = "prepaid") -> list[dict[str, Any]]:
        """The whole price list (rate limited by Digiflazz to once per 5 minutes)."""
        answer = self.post("/price-list", {"cmd": cmd, "username": self.username, "sign": self.sign("pricelist")})
        data = self._require(answer, "price list")
        if not isinstance(data, list):
            raise self._refusal(data, "price list")
        return [item for item in data if isinstance(item, dict)]

    @staticmethod
    def _require(answer: Answer, what: str) -> Any:
        if not answer.readable:
            raise DigiflazzError(f"Could not get the Digiflazz {what}: {answer.problem}. Try again later.")
        return answer.data

    @staticmethod
    def _refusal(data: Any, what: str) -> DigiflazzError:
        rc = str(data.get("rc") or "") if isinstance(data, dict) else ""
        theirs = str(data.get("message") or "") if isinstance(data, dict) else ""
        if rc == "83":
            return DigiflazzError(
                f"Digiflazz refused the {what}: it may be pulled at most once per 5 minutes (rc 83). "
                "Wait 5 minutes and run the command again.",
                rc=rc,
            )
        if rc in RESPONSE_CODES:
            explanation = RESPONSE_CODES[rc][1]
            return DigiflazzError(f"Digiflazz refused the {what}: {explanation} (rc {rc}: {theirs})", rc=rc)
        detail = theirs or repr(data)[:200]
        return DigiflazzError(f"Digiflazz gave an unexpected {what} answer (rc {rc or '?'}: {detail}).", rc=rc)


class DigiflazzProvider(FulfillmentProvider):
    """Delivers a unit with one /transaction call; re-checks it with the same ref_id."""

    name = "digiflazz"
    min_check_interval: ClassVar[timedelta] = DEFAULT_MIN_CHECK_INTERVAL
    max_check_age: ClassVar[timedelta | None] = DEFAULT_MAX_CHECK_AGE
    review_before_rebuy_codes: ClassVar[frozenset[str]] = REVIEW_BEFORE_REBUY_CODES
    deposit_fault_codes: ClassVar[frozenset[str]] = frozenset({"44", "61"})  # too low; never deposited

    def __init__(self, client: DigiflazzClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"DigiflazzProvider({self.client!r})"

    @classmethod
    def configuration_errors(cls) -> list[str]:
        errors = []
        missing = [name for name in ("DIGIFLAZZ_USERNAME", "DIGIFLAZZ_API_KEY") if not _setting_text(name)]
        if missing:
            errors.append(
                f"Set {' and '.join(missing)}: the buyer username and API key from the Digiflazz panel "
                "(the development key for DIGIFLAZZ_TESTING=true, the production key otherwise)."
            )
        base_url = _setting_text("DIGIFLAZZ_BASE_URL")
        if not base_url.startswith(("https://", "http://")):
            errors.append(
                f"DIGIFLAZZ_BASE_URL must be an http(s) URL such as https://api.digiflazz.com/v1, not {base_url!r}."
            )
        callback_url = _setting_text("DIGIFLAZZ_CALLBACK_URL")
        if callback_url and not callback_url.startswith(("https://", "http://")):
            errors.append(
                "DIGIFLAZZ_CALLBACK_URL must be empty or the public http(s) URL of "
                f"/api/fulfillment/digiflazz/callback, not {callback_url!r}."
            )
        try:
            timeout_ok = float(getattr(settings, "DIGIFLAZZ_TIMEOUT_SECONDS", 0)) > 0
        except (TypeError, ValueError):
            timeout_ok = False
        if not timeout_ok:
            errors.append("DIGIFLAZZ_TIMEOUT_SECONDS must be a number of seconds above 0.")
        return errors

    @classmethod
    def from_settings(cls) -> DigiflazzProvider:
        return cls(DigiflazzClient.from_settings())

    def fulfill(self, params: FulfillmentParams) -> FulfillmentResult:
        return self.client.transaction(params)

    def check_status(self, params: FulfillmentParams) -> FulfillmentResult:
        # Digiflazz has no separate status call: the same ref_id returns the existing transaction,
        # unless it is over 90 days old, when it would buy again.
        if params.first_sent_at and self.max_check_age and timezone.now() - params.first_sent_at > self.max_check_age:
            return FulfillmentResult.failed(
                scope=FailureScope.PERMANENT,
                code=UNKNOWN_OUTCOME_CODE,
                message=(
                    "The transaction is older than 90 days: Digiflazz would treat the same ref_id as a new purchase. "
                    "Look it up in the Digiflazz panel before retrying."
                ),
            )
        result = self.client.transaction(params)
        if result.outcome == Outcome.FAILED and result.code in REQUEST_REFUSAL_CODES:
            # The status request was turned away, not the purchase: it may still go through. The
            # scope still halts or pauses what the refusal is about.
            return FulfillmentResult.refused(
                scope=result.failure_scope or UNKNOWN_CODE_SCOPE,
                code=result.code,
                message=f"Status check refused for now ({result.message}); will re-check with the same ref_id.",
                raw=result.raw,
                retry_after=result.retry_after,
            )
        return result

    def check_account(self) -> AccountStatus:
        """The balance call: proves the key, the username and the IP allow-list, and reads the deposit."""
        try:
            deposit = self.client.balance()
        except DigiflazzError as exc:
            return AccountStatus(ok=False, code=exc.rc, message=str(exc)[:500])
        return AccountStatus(ok=True, balance=deposit, message=f"Deposit {deposit:,} IDR.")

    @classmethod
    def fault_cleared(cls, *, code: str, account: AccountStatus, lowest_balance: int | None) -> bool:
        if not account.ok:
            return False
        if code in CLEARED_BY_A_BALANCE_CALL:
            return True
        # Deposit halts (deposit_fault_codes) lift by what the balance covers: services.funding.
        return False  # rate limits clear when their wait is over; the rest by a probe


def _setting_text(name: str) -> str:
    return str(getattr(settings, name, "") or "").strip()


# --- callbacks ---------------------------------------------------------------------------------


#: Our references are shorter (Delivery.reference is 40 characters); a longer ref_id is not ours.
MAX_REF_ID_CHARS = 100


class CallbackRejected(Exception):
    """A callback that is not accepted; `http_status` is what to answer."""

    def __init__(self, reason: str, *, http_status: int) -> None:
        self.http_status = http_status
        super().__init__(reason)


@dataclass(frozen=True)
class CallbackEvent:
    """A verified callback: a ping, or the state of the transaction with `ref_id`."""

    ping: bool = False
    ref_id: str = ""
    result: FulfillmentResult | None = None  # None: the callback does not say how it went


@sensitive_variables()
def callback_signature_valid(*, body: bytes, header: str | None, secret: str) -> bool:
    """X-Hub-Signature is "sha1=" + HMAC-SHA1 of the raw body keyed with the webhook secret."""
    if not header:
        return False
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha1" or not given:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest().encode("ascii")
    # Bytes on both sides: compare_digest raises TypeError for a str with non-ASCII characters
    # ("sha1=é"), which would have answered a forged callback with a 500.
    return hmac.compare_digest(expected, given.strip().lower().encode("utf-8", "replace"))


@sensitive_variables("secret")
def callback_parse(*, body: bytes, signature: str | None, secret: str) -> CallbackEvent:
    """Verify (when a secret is set) and read a callback body. Raises CallbackRejected:
    403 for a missing or wrong signature, 400 for a body that is not a Digiflazz callback."""
    if secret and not callback_signature_valid(body=body, header=signature, secret=secret):
        reason = "missing" if not signature else "wrong"
        raise CallbackRejected(
            f"X-Hub-Signature is {reason}: the callback is not signed with DIGIFLAZZ_WEBHOOK_SECRET.", http_status=403
        )
    try:
        payload = loads_strict(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CallbackRejected(f"The body is not JSON ({str(exc)[:200]}).", http_status=400) from None
    if not isinstance(payload, dict):
        raise CallbackRejected("The body is not a JSON object.", http_status=400)
    # Before anything is looked up or stored: surrogates and NUL characters cannot be.
    problem = json_text_problem(payload)
    if problem:
        raise CallbackRejected(problem, http_status=400)
    data = payload.get("data")
    if data is None and ("hook_id" in payload or "hook" in payload):
        return CallbackEvent(ping=True)
    if not isinstance(data, dict) or not str(data.get("ref_id") or "").strip():
        raise CallbackRejected("The body has no data.ref_id.", http_status=400)
    for name in ("ref_id", "status", "rc", "sn", "message"):
        if isinstance(data.get(name), (dict, list)):
            raise CallbackRejected(f"Field data.{name} must be text or a number.", http_status=400)
    if len(str(data["ref_id"])) > MAX_REF_ID_CHARS:
        raise CallbackRejected(f"Field data.ref_id is longer than {MAX_REF_ID_CHARS} characters.", http_status=400)
    data = {key: value for key, value in data.items() if key != "sign"}
    return CallbackEvent(ref_id=str(data["ref_id"]).strip(), result=result_from_data(data))


def response_codes_markdown() -> str:
    """The response-code table of docs/digiflazz.md; a test keeps the document equal to it."""
    rows = [
        "| rc | concerns | scope | meaning and what to do |",
        "|---|---|---|---|",
        "| `00` | unit | delivered | Sukses: `sn` is the serial. |",
    ]
    rows += [f"| `{rc}` | unit | pending | {text} |" for rc, text in PENDING_CODES.items()]
    for rc, (scope, text) in RESPONSE_CODES.items():
        notes = []
        if rc in RETRY_AFTER_SECONDS:
            notes.append(f"Lifts by itself after {RETRY_AFTER_SECONDS[rc]:g} s.")
        if rc in REQUEST_REFUSAL_CODES:
            notes.append("Answered to a status check: the check was refused, the purchase stays pending.")
        rows.append(f"| `{rc}` | {scope.concerns} | {scope.value} | {' '.join([text, *notes])} |")
    return "\n".join(rows)
