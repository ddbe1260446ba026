"""Fuzzing POST /api/orders: whatever the body, a 4xx with a message, never a 5xx, nothing written."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.models import IdempotencyKey, Order
from tests.fuzz_strategies import hostile_json_bodies

pytestmark = pytest.mark.django_db

nasty_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1),  # lone surrogates
    st.just("\x00"),
    st.just("a\x00b@example.com"),
    st.text(min_size=1000, max_size=3000),
)
nasty_number = st.one_of(
    st.integers(),
    st.integers(min_value=2**63, max_value=2**200),
    st.integers(max_value=-1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
scalar = st.one_of(st.none(), nasty_text, nasty_number)
json_value = st.recursive(
    scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner, max_size=3), max_leaves=10
)
item = st.fixed_dictionaries(
    {},
    optional={
        "product": st.one_of(nasty_number, nasty_text, json_value),
        "quantity": st.one_of(nasty_number, nasty_text),
        "recipient": st.one_of(nasty_text, nasty_number),
    },
)
body = st.one_of(
    json_value,
    st.fixed_dictionaries(
        {},
        optional={
            "email": st.one_of(nasty_text, nasty_number),
            "items": st.one_of(st.lists(item, max_size=4), json_value),
        },
    ),
)


def assert_refused(response):
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response.content, "a refusal must say why"
    assert not Order.objects.exists() and not IdempotencyKey.objects.exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=body)
def test_any_json_body_is_refused_cleanly(bank, client, data):
    raw = json.dumps(data, ensure_ascii=True)  # keeps lone surrogates as \\udXXX escapes
    response = client.post("/api/orders", data=raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="fuzz")
    if response.status_code == 201:  # a valid order by chance is impossible: no product exists
        pytest.fail("an order was created from fuzz input")
    assert_refused(response)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"\xff\xfe not utf-8",
        b'{"email": NaN}',
        b'{"email": Infinity}',
        b"[" * 100000 + b"]" * 100000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'{"email": "' + b"x" * (2 * 1024 * 1024) + b'"}',
        b'{"email": "\\ud800@example.com", "items": [{"product": 1, "quantity": 1, "recipient": "\\udfff"}]}',
        b'{"email": "a@b.co", "items": [{"product": 1e400, "quantity": 1, "recipient": "x"}]}',
        b'{"email": "a@b.co", "items": [{"product": ' + b"9" * 5000 + b', "quantity": 1, "recipient": "x"}]}',
        b'{"\\ud800": 1}',
        b'{"email": "a\\u0000@b.co", "items": []}',
    ],
    ids=lambda raw: repr(raw[:30]),
)
def test_hostile_bodies_are_refused_with_a_message(bank, client, raw, phone_product):
    response = client.post("/api/orders", data=raw, content_type="application/json")
    assert_refused(response)
    assert len(response.content) < 10000


def test_a_huge_body_is_413(bank, client):
    response = client.post("/api/orders", data=b" " * (200 * 1024), content_type="application/json")
    assert response.status_code == 413 and b"larger than" in response.content


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=hostile_json_bodies(size_limit=64 * 1024))
def test_the_webhooks_hostile_bodies_are_refused_cleanly_here_too(bank, client, raw):
    # The same generator as the webhook fuzzing: raw bytes, surrogates, NUL, huge numbers,
    # deep nesting and bodies around the size limit.
    response = client.post("/api/orders", data=raw, content_type="application/json")
    assert_refused(response)
