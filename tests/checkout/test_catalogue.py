"""The catalogue a storefront reads (orders.api.catalogue): filters, search, pages named in a
Link header, the categories and brands to filter by, and ETag / Cache-Control for its cache."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.models import Brand, Category, Product
from orders.services.pricing import product_price_after_staff_edit

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(product_factory):
    games, cards = Category.objects.create(name="Games"), Category.objects.create(name="Cards")
    steam, pubg = Brand.objects.create(name="Steam"), Brand.objects.create(name="PUBG")
    made = {
        "steam500": product_factory(name="Steam 500", sku="steam500", category=games, brand=steam),
        "steam1000": product_factory(name="Steam 1000", sku="steam1000", category=games, brand=steam),
        "pubg325": product_factory(name="PUBG 325 UC", sku="pubg325", category=games, brand=pubg),
        "gift": product_factory(name="Gift card", sku="gift", category=cards),
        "off": product_factory(name="Steam off sale", sku="off", category=games, brand=steam, is_active=False),
    }
    return {"games": games, "cards": cards, "steam": steam, "pubg": pubg, **made}


def names(response) -> list[str]:
    return [product["name"] for product in response.json()]


def test_products_filter_by_category_and_brand_and_search_by_name(client, catalogue):
    assert names(client.get("/api/products")) == ["Gift card", "PUBG 325 UC", "Steam 1000", "Steam 500"]
    assert names(client.get("/api/products", {"category": catalogue["cards"].pk})) == ["Gift card"]
    assert names(client.get("/api/products", {"brand": catalogue["steam"].pk})) == ["Steam 1000", "Steam 500"]
    assert names(client.get("/api/products", {"category": catalogue["games"].pk, "search": "pubg"})) == ["PUBG 325 UC"]
    assert names(client.get("/api/products", {"search": "steam500"})) == ["Steam 500"]  # the exact SKU


def test_pages_are_named_in_a_link_header_with_the_total(client, catalogue):
    first = client.get("/api/products", {"page_size": 3})
    assert names(first) == ["Gift card", "PUBG 325 UC", "Steam 1000"]
    assert first["X-Total-Count"] == "4"
    assert 'rel="next"' in first["Link"] and "page=2" in first["Link"] and 'rel="prev"' not in first["Link"]

    second = client.get("/api/products", {"page_size": 3, "page": 2})
    assert names(second) == ["Steam 500"]
    assert 'rel="prev"' in second["Link"] and 'rel="next"' not in second["Link"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"page": "0"}, "page"),
        ({"page_size": "501"}, "page_size"),
        ({"category": "x"}, "category"),
        ({"search": "a" * 101}, "search"),
    ],
)
def test_a_bad_query_is_refused_in_the_error_shape(client, catalogue, query, field):
    response = client.get("/api/products", query)
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [field]


def test_an_unchanged_page_answers_304_and_a_price_change_gives_a_new_etag(client, catalogue):
    first = client.get("/api/products")
    tag = first["ETag"]
    assert first["Cache-Control"].startswith("public, max-age=")

    again = client.get("/api/products", HTTP_IF_NONE_MATCH=tag)
    assert again.status_code == 304 and again.content == b""

    # Staff set a manual price (the admin's path): the product changed, so does the tag.
    gift = catalogue["gift"]
    Product.objects.filter(pk=gift.pk).update(manual_price_kopecks=99900)
    product_price_after_staff_edit(product_id=gift.pk, old_price=gift.price_kopecks)
    changed = client.get("/api/products", HTTP_IF_NONE_MATCH=tag)
    assert changed.status_code == 200 and changed["ETag"] != tag


def test_categories_and_brands_list_those_with_products_on_sale(client, catalogue):
    Brand.objects.create(name="Empty brand")

    categories = client.get("/api/categories")
    brands = client.get("/api/brands")

    assert categories.json() == [
        {"id": catalogue["cards"].pk, "name": "Cards", "products": 1},
        {"id": catalogue["games"].pk, "name": "Games", "products": 3},
    ]
    assert [brand["name"] for brand in brands.json()] == ["PUBG", "Steam"]
    assert client.get("/api/brands", HTTP_IF_NONE_MATCH=brands["ETag"]).status_code == 304


def test_a_page_costs_the_same_queries_whatever_the_catalogue_size(client, product_factory):
    games = Category.objects.create(name="Games")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/products", {"category": games.pk}).status_code == 200
        return len(captured)

    product_factory(category=games)
    few = queries()
    for _ in range(30):
        product_factory(category=games)
    # How many and the latest change (the ETag), the page, then its backup SKUs, SKUs and pauses
    # (sellable).
    assert queries() == few == 5
