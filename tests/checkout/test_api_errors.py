"""The one error shape of the customer API (orders/api/errors.py): DRF's own refusals and nested
validation errors, each field named by a JSON Pointer."""

from __future__ import annotations

import pytest
from rest_framework.exceptions import ErrorDetail

from orders.api.errors import ERROR_CODES, flatten_errors
from tests.checkout.conftest import order_body

pytestmark = pytest.mark.django_db


def shape(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail", "code", "errors"} and body["code"] == code and body["detail"], body
    assert code in ERROR_CODES, f"{code} is not documented in the schema (ERROR_CODES)"
    return body


def test_drf_nested_errors_become_one_flat_list_of_pointers():
    detail = {
        "email": [ErrorDetail("Enter a valid email address.", code="invalid")],
        "items": {
            0: {"quantity": [ErrorDetail("Too small.", code="min_value")]},
            2: {"recipient": [ErrorDetail("Must be text.", code="invalid")]},
        },
        "non_field_errors": [ErrorDetail("Expected an object.", code="invalid")],
    }
    assert flatten_errors(detail) == [
        {"field": "/email", "message": "Enter a valid email address.", "code": "invalid"},
        {"field": "/items/0/quantity", "message": "Too small.", "code": "min_value"},
        {"field": "/items/2/recipient", "message": "Must be text.", "code": "invalid"},
        {"field": "", "message": "Expected an object.", "code": "invalid"},
    ]
    # A list of per-element errors (DRF's other form) gives the same pointers.
    assert flatten_errors({"items": [{}, {"product": [ErrorDetail("No.", code="x")]}]}) == [
        {"field": "/items/1/product", "message": "No.", "code": "x"}
    ]


def test_an_unknown_field_name_is_escaped_in_its_pointer(bank, post_order, phone_product):
    body = order_body(phone_product)
    body["a/b~c"] = 1
    errors = shape(post_order(body), 400, "invalid")["errors"]
    assert [error["field"] for error in errors] == ["/a~1b~0c"]


def test_unreadable_json_is_a_parse_error(bank, post_order):
    body = shape(post_order(b"{"), 400, "parse_error")
    assert "not valid JSON" in body["detail"] and body["errors"] == []


def test_a_body_too_large_is_a_413_in_the_shape(bank, post_order, settings):
    settings.ORDER_API_MAX_BODY_BYTES = 100
    body = shape(post_order({"email": "x" * 200}), 413, "body_too_large")
    assert "larger than 100 bytes" in body["detail"]


def test_an_undocumented_method_is_a_405_in_the_shape_with_allow(client):
    response = client.delete("/api/orders")
    shape(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]


def test_a_form_body_is_a_415_in_the_shape(client):
    shape(client.post("/api/orders", data={"email": "a@b.co"}), 415, "unsupported_media_type")
