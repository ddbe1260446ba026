"""A strict JSON parser for the customer API: bounded size and depth, no NaN/Infinity.

Every way a body can be unreadable ends as a 4xx with a message, never as a 500: too big
(413), not UTF-8, not JSON, nested too deeply (400).
"""

from __future__ import annotations

import json

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

DEFAULT_MAX_BODY_BYTES = 64 * 1024


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"


def _no_constants(name: str):
    raise ValueError(f"{name} is not allowed in JSON")


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = getattr(settings, "ORDER_API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise BodyTooLarge(f"The request body is larger than {limit} bytes; an order is much smaller.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("The request body is not valid UTF-8.") from None
        try:
            return json.loads(text, parse_constant=_no_constants)
        except RecursionError:
            raise ParseError("The JSON body is nested too deeply.") from None
        except ValueError as exc:
            raise ParseError(f"The request body is not valid JSON: {str(exc)[:200]}") from None
