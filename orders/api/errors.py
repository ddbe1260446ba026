"""The one error shape of the customer API, and the exception handler that gives every refusal it.

Every answer that is not a success is `{"detail": str, "code": str, "errors": [...]}`: `detail`
says what is wrong and how to fix it, `code` is stable for programs, and `errors` lists one entry
per bad field (empty when the problem is not a field's). A field is named by a JSON Pointer into
the request body (RFC 6901: "/items/0/recipient"; "" is the body as a whole) or by the name of the
header at fault ("Idempotency-Key").

400 means the request breaks the OpenAPI schema (a generated client never sends it); 422 means a
request the schema allows was refused for what it asks (a product not on sale, a recipient not in
the product's format, more units than an order may hold, a reused Idempotency-Key).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

# Top-level codes of each refusal (fields carry their own, DRF's: required, invalid, max_value...).
ERROR_CODES = {
    "invalid": "400: the request breaks the schema; `errors` names each bad field",
    "parse_error": "400: the body is not readable JSON",
    "not_found": "404: no such order, or a wrong token",
    "method_not_allowed": "405: the operation has no such method",
    "idempotency_key_in_progress": "409: a request with this Idempotency-Key is being processed",
    "body_too_large": "413: the body is over 64 KiB",
    "unsupported_media_type": "415: the body is not application/json",
    "order_not_accepted": "422: the order is well formed but cannot be sold as asked; `errors` says why",
    "idempotency_key_reused": "422: the Idempotency-Key was used with another body",
    "throttled": "429: too many orders from this address; see Retry-After",
    "payment_unavailable": "503: the bank could not start the payment; repeat with the same Idempotency-Key",
    "checkout_busy": "503: as many payments are being started as the shop takes at once; nothing was written, "
    "repeat after Retry-After seconds",
}


def field_error(field: str, message: str, code: str = "invalid") -> dict[str, str]:
    return {"field": field, "message": str(message), "code": code}


def error_body(detail: str, code: str, errors: Iterable[Mapping[str, str]] = ()) -> dict[str, Any]:
    return {"detail": str(detail), "code": code, "errors": [dict(error) for error in errors]}


def error_response(http_status: int, detail: str, code: str, errors: Iterable[Mapping[str, str]] = ()) -> Response:
    return Response(error_body(detail, code, errors), status=http_status)


def _pointer_token(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def flatten_errors(detail: Any, pointer: str = "") -> list[dict[str, str]]:
    """DRF's nested error detail (dicts by field, lists or dicts by index) as a flat list of
    field errors, each named by its JSON Pointer."""
    if isinstance(detail, Mapping):
        out: list[dict[str, str]] = []
        for key, value in detail.items():
            # Errors about the object as a whole (DRF's non_field_errors) belong to the object itself.
            child = pointer if key in ("non_field_errors", "__all__") else f"{pointer}/{_pointer_token(key)}"
            out.extend(flatten_errors(value, child))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (Mapping, list)) for item in detail):
            return [field_error(pointer, item, getattr(item, "code", None) or "invalid") for item in detail]
        # A list of per-element errors (an empty entry is an element without errors).
        out = []
        for index, item in enumerate(detail):
            out.extend(flatten_errors(item, f"{pointer}/{index}"))
        return out
    return [field_error(pointer, detail, getattr(detail, "code", None) or "invalid")]


def summary(errors: list[dict[str, str]], *, what: str) -> str:
    """One sentence naming the first bad field (and how many more there are)."""
    if not errors:
        return what
    first = errors[0]
    where = f"{first['field']}: " if first["field"] else ""
    others = len(errors) - 1
    more = f" (and {others} more problem{'s' if others > 1 else ''}, see errors)" if others else ""
    return f"{what} {where}{first['message']}{more}"


class OrderNotAccepted(APIException):
    """422: a schema-valid order that cannot be sold as asked; `errors` names each item at fault."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "order_not_accepted"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__(summary(errors, what="The order cannot be accepted:"))


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (status, headers such as Retry-After and Allow), with the body in the one shape."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected exception: Django's 500 handling, logged and reported
    if isinstance(exc, OrderNotAccepted):
        response.data = error_body(exc.detail, exc.default_code, exc.errors)
    elif isinstance(exc, ValidationError):
        errors = flatten_errors(exc.detail)
        response.data = error_body(summary(errors, what="The request is invalid:"), "invalid", errors)
    elif isinstance(exc, APIException):
        detail = exc.detail
        code = detail.code if hasattr(detail, "code") else exc.default_code
        response.data = error_body(str(detail), code or exc.default_code)
    return response
