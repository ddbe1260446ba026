"""The OpenAPI schema says what the API does: its constraints are the ones enforced, every refusal
is documented in the one error shape, and links lead from one answer to the next request.
Machine webhooks are not in it. (The whole API against the schema: tests/integration/test_api_contract.py.)"""

from __future__ import annotations

import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from hypothesis import given, settings
from hypothesis import strategies as st

from orders.api.serializers import OrderCreateSerializer, OrderItemInSerializer
from orders.state import OrderStatus
from tests.checkout.conftest import order_body

pytestmark = pytest.mark.django_db

ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def component(schema: dict, name: str) -> dict:
    return schema["components"]["schemas"][name]


def _from_openapi(node):
    # OpenAPI 3.0's `nullable: true` is JSON Schema's `"type": [type, "null"]`.
    if isinstance(node, dict):
        node = {key: _from_openapi(value) for key, value in node.items()}
        if node.pop("nullable", False):
            if "type" in node:
                node["type"] = [node["type"], "null"]
            else:
                node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_from_openapi(value) for value in node]
    return node


def json_schema_of(schema: dict, name: str) -> dict:
    """A component as a standalone JSON Schema (its $refs resolvable)."""
    return _from_openapi({**component(schema, name), "components": schema["components"]})


def test_schema_covers_the_customer_endpoints_and_documents_every_refusal_in_the_error_shape(schema):
    paths = schema["paths"]
    assert set(paths) == {
        "/api/products",
        "/api/categories",
        "/api/brands",
        "/api/orders",
        "/api/orders/{public_id}",
    }
    create = paths["/api/orders"]["post"]["responses"]
    assert set(create) == {"201", "400", "409", "413", "415", "422", "429", "503"}
    status = paths["/api/orders/{public_id}"]["get"]["responses"]
    assert set(status) == {"200", "400", "404"}
    for responses in (create, status):
        for code, response in responses.items():
            if code.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == ERROR_REF, code
    assert create["429"]["headers"]["Retry-After"]["required"] is True
    error = component(schema, "Error")
    assert set(error["required"]) == {"detail", "code", "errors"}
    assert error["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert set(component(schema, "FieldError")["required"]) == {"field", "message", "code"}


def test_the_order_request_states_every_constraint_the_api_enforces(schema, settings):
    order = component(schema, "OrderCreateRequest")
    item = component(schema, "OrderItemInRequest")
    assert order["additionalProperties"] is False and item["additionalProperties"] is False
    assert set(order["required"]) == {"email", "items"}
    assert set(item["required"]) == {"product", "quantity", "recipient"}
    items = order["properties"]["items"]
    assert (items["minItems"], items["maxItems"]) == (1, settings.ORDER_MAX_UNITS)
    email = order["properties"]["email"]
    assert (email["type"], email["format"], email["minLength"], email["maxLength"]) == ("string", "email", 1, 254)
    quantity = item["properties"]["quantity"]
    assert (quantity["type"], quantity["minimum"], quantity["maximum"]) == ("integer", 1, settings.ORDER_MAX_UNITS)
    product = item["properties"]["product"]
    # Every client represents every id exactly (Swagger UI showed 2**63-1 as 9223372036854776000).
    assert (product["type"], product["minimum"], product["maximum"]) == ("integer", 1, 2**53 - 1)
    recipient = item["properties"]["recipient"]
    assert (recipient["type"], recipient["minLength"], recipient["maxLength"]) == ("string", 1, 100)
    assert recipient["pattern"].startswith("^") and recipient["pattern"].endswith("$")
    header = next(p for p in schema["paths"]["/api/orders"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header" and header["schema"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[!-~]{1,255}$",
    }


def test_limits_that_follow_settings_follow_them_in_the_schema(client, settings):
    settings.ORDER_MAX_UNITS = 7
    schema = yaml.safe_load(client.get("/api/schema/").content)
    assert component(schema, "OrderCreateRequest")["properties"]["items"]["maxItems"] == 7
    assert component(schema, "OrderItemInRequest")["properties"]["quantity"]["maximum"] == 7


def test_the_issues_number_recipient_is_refused_in_the_error_shape(bank, post_order, phone_product):
    body = {"email": "0@0.com", "items": [{"product": phone_product.pk, "quantity": 1, "recipient": 0}]}
    response = post_order(body)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "/items/0/recipient", "message": "Must be text (a JSON string).", "code": "invalid"}
    ]
    assert not bank.requests


def test_the_request_example_is_a_body_the_api_takes(schema):
    content = schema["paths"]["/api/orders"]["post"]["requestBody"]["content"]["application/json"]
    examples = [example["value"] for example in content["examples"].values()]
    assert examples
    for example in examples:
        serializer = OrderCreateSerializer(data=example)
        assert serializer.is_valid(), serializer.errors


def _schema_pattern(schema: dict, component_name: str, field: str) -> re.Pattern:
    pattern = component(schema, component_name)["properties"][field]["pattern"]
    # ECMA's `$` is Python's `\Z` (Python's `$` also matches before a final newline).
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)


@pytest.fixture(scope="module")
def recipient_pattern() -> re.Pattern:
    from drf_spectacular.generators import SchemaGenerator

    return _schema_pattern(SchemaGenerator().get_schema(request=None, public=True), "OrderItemInRequest", "recipient")


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=110) | st.sampled_from([" ", "\u00a0", "\u3000x", "a\x85", "\x1c", "x\n", "\ufeff"]))
def test_the_recipient_pattern_of_the_schema_is_the_check_of_the_api(recipient_pattern, text):
    pattern = recipient_pattern
    in_schema = 1 <= len(text) <= 100 and pattern.search(text) is not None
    field = OrderItemInSerializer().fields["recipient"]
    accepted = True
    try:
        field.run_validation(text)
    except Exception:  # noqa: BLE001 - any refusal
        accepted = False
    # A lone surrogate is not text: JSON Schema cannot say so, the API refuses it.
    if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        assert not accepted
    else:
        assert accepted == in_schema, (text, accepted, in_schema)


@pytest.mark.parametrize("key", ["3f2c7a0e-5a51-4b8e-9f0e-2d7c1b6a9e41", "a", "~" * 255, "", "a b", "x" * 256, "ключ"])
def test_the_idempotency_key_pattern_of_the_schema_is_the_check_of_the_api(
    schema, bank, post_order, phone_product, key
):
    header = next(p for p in schema["paths"]["/api/orders"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    in_schema = re.fullmatch(header["schema"]["pattern"].strip("^$"), key) is not None
    assert post_order(order_body(phone_product), key=key).status_code == (201 if in_schema else 400)


def test_every_order_status_is_in_the_schema(schema):
    assert component(schema, "OrderStatusEnum")["enum"] == list(OrderStatus.values)
    assert "partially_refunded" in component(schema, "OrderStatusEnum")["enum"]
    status_ref = {"$ref": "#/components/schemas/OrderStatusEnum"}
    assert component(schema, "OrderStatus")["properties"]["status"] == status_ref
    assert status_ref in component(schema, "OrderCreated")["properties"]["status"]["allOf"]


def test_links_lead_from_the_catalogue_to_an_order_and_from_an_order_to_its_status(schema):
    created = schema["paths"]["/api/orders"]["post"]["responses"]["201"]["links"]
    assert created["GetOrderStatus"]["operationId"] == "orders_retrieve"
    assert created["GetOrderStatus"]["parameters"] == {
        "public_id": "$response.body#/id",
        "token": "$response.body#/access_token",
    }
    listed = schema["paths"]["/api/products"]["get"]["responses"]["200"]["links"]
    assert listed["OrderFirstProduct"]["operationId"] == "orders_create"
    assert listed["OrderFirstProduct"]["requestBody"] == {"items": [{"product": "$response.body#/0/id"}]}
    operation_ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"orders_retrieve", "orders_create"} <= operation_ids


def test_the_answers_match_their_schemas(schema, bank, post_order, phone_product, client):
    import jsonschema

    def check(body, name):
        jsonschema.validate(body, json_schema_of(schema, name))

    created = post_order(order_body(phone_product))
    check(created.json(), "OrderCreated")
    check(post_order({"email": "x"}).json(), "Error")
    answer = created.json()
    status = client.get(f"/api/orders/{answer['id']}", {"token": answer["access_token"]})
    check(status.json(), "OrderStatus")
    check(client.get(f"/api/orders/{answer['id']}", {"token": "wrong"}).json(), "Error")
    missing = client.get(f"/api/orders/{answer['id']}")
    assert missing.status_code == 400 and missing.json()["errors"][0]["field"] == "token"
    check(missing.json(), "Error")
    not_json = client.post("/api/orders", data="email=x", content_type="application/x-www-form-urlencoded")
    assert not_json.status_code == 415
    check(not_json.json(), "Error")
    browser = client.get("/api/products", HTTP_ACCEPT="text/html")
    assert browser.status_code == 200 and browser["Content-Type"] == "application/json"


def test_every_operation_in_the_schema_answers_in_the_one_error_shape(schema):
    """A view added to the API later gets the error handler and JSON answers by subclassing
    CustomerAPIView; one that does not would answer DRF's own error shapes."""
    from django.urls import resolve

    from orders.api.views import CustomerAPIView

    for path in schema["paths"]:
        view = resolve(re.sub(r"\{[^}]+\}", "x", path)).func.view_class
        assert issubclass(view, CustomerAPIView), f"{path}: {view.__name__} is not a CustomerAPIView"


def test_machine_endpoints_are_not_in_the_schema(schema):
    assert not any("tbank" in path or "digiflazz" in path or "healthz" in path for path in schema["paths"])


def test_docs_page_is_served_without_a_cdn(client):
    response = client.get("/api/docs/")
    page = response.content.decode()
    assert response.status_code == 200 and "/api/schema/" in page
    # Swagger UI comes from our static files: the docs work where the CDN is unreachable.
    bundle = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert f"/static/{bundle}" in page and "cdn" not in page.lower()
    assert finders.find(bundle), "collectstatic would not find Swagger UI"
