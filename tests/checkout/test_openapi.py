"""The OpenAPI schema documents the customer API with its error answers; machine webhooks are not in it."""

from __future__ import annotations

import pytest
import yaml
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def test_schema_covers_the_customer_endpoints_and_their_errors(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    paths = schema["paths"]
    assert set(paths) == {"/api/products", "/api/orders", "/api/orders/{public_id}"}
    assert set(paths["/api/orders"]["post"]["responses"]) == {"201", "400", "409", "413", "422", "429", "503"}
    assert set(paths["/api/orders/{public_id}"]["get"]["responses"]) == {"200", "404"}
    params = {p["name"] for p in paths["/api/orders"]["post"]["parameters"]}
    assert "Idempotency-Key" in params
    status = schema["components"]["schemas"]["OrderStatus"]["properties"]
    assert set(status) == {"id", "status", "amount", "refunded_amount", "email", "created_at", "paid_at", "items"}


def test_docs_page_is_served_without_a_cdn(client):
    response = client.get("/api/docs/")
    page = response.content.decode()
    assert response.status_code == 200 and "/api/schema/" in page
    # Swagger UI comes from our static files: the docs work where the CDN is unreachable.
    bundle = "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert f"/static/{bundle}" in page and "cdn" not in page.lower()
    assert finders.find(bundle), "collectstatic would not find Swagger UI"
