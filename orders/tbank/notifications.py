"""T-Bank payment notifications: parsing bodies, the statuses they carry, redaction for audit.

Protocol facts: every root-level scalar except Token takes part in the token (nested objects
and arrays do not), plus Password; pairs are sorted by key, values concatenated, booleans
lowercase, numbers exactly as sent; SHA-256, lowercase hex. Fields are never taken from a
fixed list, because the bank adds root fields without notice.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fulfillment_site.untrusted import json_text_problem
from orders.tbank.signing import (  # noqa: F401 - re-exported for callers of this module
    compute_token,
    sign_notification,
    terminal_key_is_valid,
    token_is_valid,
)

# Statuses, as the bank names them.
CONFIRMED = "CONFIRMED"
AUTHORIZED = "AUTHORIZED"
FAILED_PAYMENT_STATUSES = frozenset({"REJECTED", "CANCELED", "DEADLINE_EXPIRED", "ATTEMPTS_EXPIRED", "AUTH_FAIL"})
MONEY_RETURNED_STATUSES = frozenset({"REFUNDED", "REVERSED"})
PARTIAL_STATUSES = frozenset({"PARTIAL_REFUNDED", "PARTIAL_REVERSED"})


class JsonNumberLiteral(str):
    """A JSON number with a fraction or exponent, kept exactly as sent.

    json.loads would turn 1111.0 into a float and render it differently from the bank,
    breaking the token; keeping the literal keeps the signature honest.
    """


class MalformedNotification(ValueError):
    """The body is not a notification we can read; the message says what is wrong."""


def parse_notification(body: bytes) -> dict[str, Any]:
    """Decode a notification body into a dict, keeping number literals intact."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNotification("The body is not valid UTF-8.") from exc
    try:
        payload = json.loads(text, parse_float=JsonNumberLiteral, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise MalformedNotification(f"The body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedNotification("The body must be a JSON object.")
    # Before anything is looked up or stored: surrogates and NUL characters cannot be.
    problem = json_text_problem(payload)
    if problem:
        raise MalformedNotification(problem)
    for field in ("TerminalKey", "OrderId", "Status", "Token"):
        if field not in payload:
            raise MalformedNotification(f"Required field {field} is missing.")
    for field in ("TerminalKey", "Status", "Token"):
        if not isinstance(payload[field], str):
            raise MalformedNotification(f"Field {field} must be a string.")
    if not _is_id(payload["OrderId"]):
        raise MalformedNotification("Field OrderId must be a string or an integer.")
    return payload


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _is_id(value: Any) -> bool:
    # A fractional number literal is kept as a str subclass; it is still not an id.
    if isinstance(value, JsonNumberLiteral):
        return False
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


_TOKEN_VALUE = re.compile(r'("Token"\s*:\s*)"(?:[^"\\]|\\.)*"')


def redact_body(body: bytes, limit: int) -> str:
    """The body for the audit log: Token masked, size bounded, always text."""
    # Masked in place, so the record keeps the body exactly as the bank wrote it otherwise.
    text = _TOKEN_VALUE.sub(r'\1"***"', body.decode("utf-8", "replace"))
    if len(text) > limit:
        text = text[:limit] + f"... [truncated, {len(body)} bytes received]"
    return text
