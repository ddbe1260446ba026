"""Checks on JSON decoded from an untrusted request, before any of it reaches the database.

`json.loads` accepts text that no database (nor the UTF-8 encoder) takes: a lone UTF-16
surrogate written as an escape (`"\\ud800"`) fails every encode, and a NUL character
(`"\\u0000"`) cannot be stored in PostgreSQL text or jsonb. Either one used to get as far as a
query or an insert and come back as a 500 or a 503 (which makes the sender retry for ever).
Deep nesting is refused too: what decodes near the recursion limit fails to encode again
further down the stack (the audit record of a provider's answer is JSON).
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Deepest nesting taken in; real notifications and callbacks are 2 to 4 levels deep.
MAX_JSON_DEPTH = 32

_NUL = "contains a NUL character (\\u0000), which cannot be stored"
_SURROGATE = "contains a lone UTF-16 surrogate (such as \\ud800), which is not text"


def loads_strict(body: bytes | str) -> Any:
    """json.loads without NaN, Infinity or numbers that overflow to them (1e999): none is JSON,
    and none can be stored in a JSON column. Raises ValueError (RecursionError when too deep)."""
    return json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def json_text_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why the decoded JSON `value` cannot be taken in, naming where; None when it can."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            return f"The body is nested deeper than {max_depth} levels (at {path})."
        if isinstance(item, dict):
            for key, child in item.items():
                problem = _text_problem(key)
                if problem:
                    return f"A field name in {path or 'the top level'} {problem}."
                stack.append((child, f"{path}.{_printable(key)}" if path else _printable(key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
        elif isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return f"Field {path or '(the whole body)'} {problem}."
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return _NUL
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE
    return None


def _printable(key: str) -> str:
    # Field names are echoed in answers and logs: short, and escaped unless plain.
    if len(key) <= 40 and key.isascii() and key.isprintable():
        return key
    return ascii(key[:40])
