"""What drf-spectacular cannot say by itself about the customer API: request objects refuse unknown
fields (`additionalProperties: false`), and the links a client follows from one answer to the
next request (the catalogue to an order, a created order to its status), which Schemathesis'
stateful tests follow too (tests/integration/test_api_contract.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema

from orders.api.serializers import StrictFieldsMixin

ORDER_CREATE = "orders_create"
ORDER_STATUS = "orders_retrieve"
PRODUCT_LIST = "products_list"


class CustomerAPISchema(AutoSchema):
    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictFieldsMixin):
            schema["additionalProperties"] = False
        return schema


LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    (ORDER_CREATE, "201"): {
        "GetOrderStatus": {
            "operationId": ORDER_STATUS,
            "parameters": {"public_id": "$response.body#/id", "token": "$response.body#/access_token"},
            "description": "The order just created, read with its access token (what the customer's "
            "status page shows).",
        }
    },
    (PRODUCT_LIST, "200"): {
        "OrderFirstProduct": {
            "operationId": ORDER_CREATE,
            # Merged into the request body: the first item buys the first product listed.
            "requestBody": {"items": [{"product": "$response.body#/0/id"}]},
            "description": "Order the first product listed (its `recipient_pattern` says what the recipient must be).",
        }
    },
}


def add_links(result: dict[str, Any], generator, request, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the OpenAPI links of LINKS."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for (operation_id, status), links in LINKS.items():
                if operation.get("operationId") == operation_id and status in operation.get("responses", {}):
                    operation["responses"][status]["links"] = links
    return result
