"""T-Bank internet acquiring: everything that speaks the bank's protocol lives in this package.

`signing` (the Token), `notifications` (what the bank POSTs to us), `client` (the methods we
call: Init, GetState, CheckOrder, Cancel) and `receipts` (54-FZ receipts).
"""

from orders.tbank.notifications import (
    AUTHORIZED,
    CONFIRMED,
    FAILED_PAYMENT_STATUSES,
    MONEY_RETURNED_STATUSES,
    PARTIAL_STATUSES,
    JsonNumberLiteral,
    MalformedNotification,
    _is_id,
    parse_notification,
    redact_body,
)
from orders.tbank.signing import compute_token, sign_notification, terminal_key_is_valid, token_is_valid

__all__ = [
    "AUTHORIZED",
    "CONFIRMED",
    "FAILED_PAYMENT_STATUSES",
    "MONEY_RETURNED_STATUSES",
    "PARTIAL_STATUSES",
    "JsonNumberLiteral",
    "MalformedNotification",
    "_is_id",
    "compute_token",
    "parse_notification",
    "redact_body",
    "sign_notification",
    "terminal_key_is_valid",
    "token_is_valid",
]
