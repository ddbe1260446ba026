"""The T-Bank Token: how requests to the bank and notifications from it are signed.

Every root-level scalar except Token takes part (nested objects and arrays do not), plus
Password; pairs are sorted by key, values concatenated, booleans lowercase, numbers exactly
as sent; SHA-256, lowercase hex. Fields are never taken from a fixed list, because the bank
adds root fields without notice.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from django.views.decorators.debug import sensitive_variables


def _render(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


# Each function holding the password (or a string built from it) hides its variables from
# error reports: see fulfillment_site/error_reports.py.
@sensitive_variables()
def compute_token(payload: Mapping[str, Any], password: str) -> str:
    """The Token T-Bank puts on `payload`, for the terminal password `password`."""
    pairs = {key: value for key, value in payload.items() if key != "Token" and not isinstance(value, (dict, list))}
    pairs["Password"] = password
    joined = "".join(_render(pairs[key]) for key in sorted(pairs, key=lambda k: k.encode("utf-8")))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


@sensitive_variables()
def token_is_valid(payload: Mapping[str, Any], password: str) -> bool:
    received = payload.get("Token")
    if not isinstance(received, str):
        return False
    expected = compute_token(payload, password)
    return hmac.compare_digest(expected.encode("ascii"), received.lower().encode("utf-8", "replace"))


def terminal_key_is_valid(payload: Mapping[str, Any], terminal_key: str) -> bool:
    received = payload.get("TerminalKey")
    if not isinstance(received, str):
        return False
    return hmac.compare_digest(received.encode("utf-8"), terminal_key.encode("utf-8"))


@sensitive_variables()
def sign_notification(payload: dict[str, Any], password: str) -> dict[str, Any]:
    """Return `payload` with the Token the bank would put on it (for simulate_payment and tests)."""
    signed = {key: value for key, value in payload.items() if key != "Token"}
    signed["Token"] = compute_token(signed, password)
    return signed
