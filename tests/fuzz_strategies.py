"""Hypothesis strategies for hostile request bodies, shared by every endpoint's fuzz test.

What they make, beyond well-formed JSON: lone UTF-16 surrogates (as JSON escapes, and as raw
bytes that are not UTF-8), NUL characters, bidi overrides, long values, integers too long for
Python to parse and numbers that overflow a float (written as raw literals, which json.dumps
cannot produce), nesting just above and far above any sane depth, and bodies from empty to
beyond an endpoint's size limit.

Use them on a new endpoint by drawing `hostile_json_bodies()` (whole bodies) or by mutating a
valid payload with `hostile_values` and serialising it with `dump_body` (the fuzz tests of
the T-Bank webhook and of the Digiflazz callback do both).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# --- strings ------------------------------------------------------------------------------------

LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
#: Strings no database takes (surrogates; NUL for PostgreSQL) and strings that look odd.
hostile_strings = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=8), st.sampled_from(LONE_SURROGATES), st.text(max_size=8)),
    st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=8), st.text(max_size=8)),
    st.sampled_from(["\u202e", "\ufeff", "\U0001f4b8", "я", "é", "\u0000\u0000", "\ud800\udc00"]),
)
#: Long values of single characters: ASCII, Cyrillic, astral-plane emoji, NUL, a bidi override, a surrogate.
huge_strings = st.tuples(
    st.sampled_from(["9", "x", "я", "\U0001f4b8", "\x00", "\u202e", "\ud800"]), st.integers(1000, 200_000)
).map(lambda pair: pair[0] * pair[1])


# --- numbers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawLiteral:
    """A number written into the body exactly as given (json.dumps could not write it).

    Not a str subclass: Hypothesis replays drawn values by their exact type while shrinking.
    """

    text: str

    def __str__(self) -> str:  # what the T-Bank token covers: the literal as sent
        return self.text


#: Numbers a JSON parser chokes on or turns into something else: over Python's 4,300-digit int
#: limit, overflowing a float to infinity, the non-JSON constants, negative zero, exponents.
raw_numbers = st.one_of(
    st.integers(4301, 20_000).map(lambda n: RawLiteral("9" * n)),
    st.sampled_from(["1e999", "-1e999", "1E+400", "NaN", "Infinity", "-Infinity", "-0", "0.0", "1e-999"]).map(
        RawLiteral
    ),
    st.integers(20, 4300).map(lambda n: RawLiteral("1" + "0" * n)),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | hostile_strings
)
#: Any JSON-ish value: scalars, huge strings, raw numbers, shallow nesting.
hostile_values = st.recursive(
    scalars | huge_strings | raw_numbers,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_strings, children, max_size=4),
    max_leaves=8,
)


# --- bodies -------------------------------------------------------------------------------------

_RAW_MARK = re.compile(r'"\\u0000RAW(\d+)\\u0000"')


def dump_body(value: Any, *, ascii_only: bool = True) -> bytes:
    """Serialise `value` to body bytes, writing RawLiterals verbatim.

    `ascii_only` escapes every non-ASCII character, so a lone surrogate travels as the JSON
    escape \\ud800 (valid UTF-8: how an attacker sends one); otherwise characters are written
    as UTF-8, and a lone surrogate as its raw bytes (which are not UTF-8 at all).
    """
    raws: list[str] = []

    def mark(item: Any) -> Any:
        if isinstance(item, RawLiteral):
            raws.append(item.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(item, dict):
            return {key: mark(child) for key, child in item.items()}
        if isinstance(item, list):
            return [mark(child) for child in item]
        return item

    text = json.dumps(mark(value), ensure_ascii=ascii_only)
    text = _RAW_MARK.sub(lambda match: raws[int(match.group(1))], text)
    return text.encode("utf-8", "surrogatepass")


def deep_nesting(depth: int, kind: str = "array") -> bytes:
    """A body nested `depth` levels: arrays, objects, or an object left open."""
    if kind == "array":
        return ("[" * depth + "]" * depth).encode()
    if kind == "object":
        return ('{"a":' * depth + "1" + "}" * depth).encode()
    return ('{"a":' * depth).encode()


nested_bodies = st.builds(
    deep_nesting,
    st.one_of(st.integers(30, 40), st.integers(900, 1100), st.integers(10_000, 60_000)),
    st.sampled_from(["array", "object", "open"]),
)


def sized_bodies(limit: int) -> st.SearchStrategy[bytes]:
    """Bodies just under, at and over `limit` bytes (the endpoint's size limit)."""
    return st.sampled_from([limit - 1, limit, limit + 1, limit * 4]).map(
        lambda n: b'{"a":"' + b"x" * max(0, n - 8) + b'"}'
    )


def hostile_json_bodies(*, size_limit: int | None = None) -> st.SearchStrategy[bytes]:
    """Whole bodies of any kind: raw bytes, JSON values of any type, deep nesting, huge sizes."""
    bodies = [
        st.binary(max_size=300),
        st.builds(dump_body, hostile_values, ascii_only=st.booleans()),
        nested_bodies,
        st.sampled_from([b"", b"null", b"[]", b'""', b"{}", b"\xef\xbb\xbf{}", b'{"a":1,"a":2}', b"\xed\xa0\x80"]),
    ]
    if size_limit:
        bodies.append(sized_bodies(size_limit))
    return st.one_of(*bodies)
