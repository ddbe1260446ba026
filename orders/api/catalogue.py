"""The catalogue for a storefront: products on sale filtered by category and brand, searched by
name, a page at a time, and the categories and brands to filter by.

The body stays a JSON list (as it always was); the page is chosen with `page` and `page_size`
and the neighbours are named in a `Link` header (RFC 8288, rel="next"/"prev") with the total in
`X-Total-Count`. Every answer carries an `ETag` computed from what it lists (ids, prices and the
latest change) and `Cache-Control: public, max-age=CATALOGUE_CACHE_SECONDS`; a storefront that
sends `If-None-Match` with the current tag gets 304 and no body.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from fulfillment.selectors import products_sellability
from orders.api.errors import error_response, field_error
from orders.models import Brand, Category, Product

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_SEARCH_LENGTH = 100
MAX_PAGE = 10**6
MAX_ID = 2**63 - 1


class NamedSerializer(serializers.Serializer):
    id = serializers.IntegerField(min_value=1)
    name = serializers.CharField()
    products = serializers.IntegerField(help_text="Products on sale in it.")


def _whole(request, name: str, *, default: int | None, low: int, high: int, errors: list) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        errors.append(field_error(name, f"must be a whole number from {low} to {high}, not {raw[:40]!r}."))
        return default
    return int(raw)


def catalogue_query(request) -> tuple[QuerySet[Product] | None, dict, list]:
    """The products the request asks for, its page and page size, or the errors that refuse it."""
    errors: list = []
    products = Product.objects.filter(is_active=True)
    category = _whole(request, "category", default=None, low=1, high=MAX_ID, errors=errors)
    brand = _whole(request, "brand", default=None, low=1, high=MAX_ID, errors=errors)
    page = _whole(request, "page", default=1, low=1, high=MAX_PAGE, errors=errors)
    size = _whole(request, "page_size", default=DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE, errors=errors)
    search = request.query_params.get("search", "").strip()
    if len(search) > MAX_SEARCH_LENGTH or "\x00" in search:
        errors.append(field_error("search", f"must be at most {MAX_SEARCH_LENGTH} characters of text."))
    if errors:
        return None, {}, errors
    if category:
        products = products.filter(category_id=category)
    if brand:
        products = products.filter(brand_id=brand)
    if search:
        products = products.filter(Q(name__icontains=search) | Q(sku__iexact=search))
    return products.order_by("name", "id"), {"page": page, "page_size": size}, []


def _etag(request, total: int, latest) -> str:
    """What the page depends on: the query, how many products match and the latest change among
    them (every price change, by a rule or by staff, stamps updated_at)."""
    digest = hashlib.sha256(repr((sorted(request.query_params.items()), total, latest)).encode()).hexdigest()
    return f'"{digest[:32]}"'


def _link(request, *, page: int, size: int) -> str:
    query = {key: value for key, value in request.query_params.items() if key not in ("page", "page_size")}
    query.update(page=page, page_size=size)
    return request.build_absolute_uri(f"{request.path}?{urlencode(query)}")


def catalogue_response(request, serialize) -> Response:
    """The page of products the request asks for, with Link, X-Total-Count, ETag and Cache-Control."""
    products, paging, errors = catalogue_query(request)
    if errors:
        return error_response(status.HTTP_400_BAD_REQUEST, "The query string is not valid.", "invalid", errors)
    page, size = paging["page"], paging["page_size"]
    summary = products.aggregate(total=Count("id"), latest=Max("updated_at"))
    total = summary["total"]
    tag = _etag(request, total, summary["latest"])
    headers = {"ETag": tag, "Cache-Control": f"public, max-age={settings.CATALOGUE_CACHE_SECONDS}"}
    if request.headers.get("If-None-Match") == tag:
        return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
    rows = serialize(products[(page - 1) * size : page * size])
    links = []
    if page * size < total:
        links.append(f'<{_link(request, page=page + 1, size=size)}>; rel="next"')
    if page > 1:
        links.append(f'<{_link(request, page=page - 1, size=size)}>; rel="prev"')
    if links:
        headers["Link"] = ", ".join(links)
    headers["X-Total-Count"] = str(total)
    return Response(rows, headers=headers)


def named_list(model: type[Category] | type[Brand]) -> list[dict]:
    """Categories or brands with at least one product on sale, by name, with how many."""
    rows = (
        model.objects.annotate(on_sale=Count("products", filter=Q(products__is_active=True)))
        .filter(on_sale__gt=0)
        .order_by("name", "id")
        .values_list("id", "name", "on_sale")
    )
    return [{"id": pk, "name": name, "products": count} for pk, name, count in rows]


CATALOGUE_PARAMETERS = [
    OpenApiParameter(
        "category",
        {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        description="Only products of this category (GET /api/categories).",
    ),
    OpenApiParameter(
        "brand",
        {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        description="Only products of this brand (GET /api/brands).",
    ),
    OpenApiParameter(
        "search",
        {"type": "string", "maxLength": MAX_SEARCH_LENGTH, "pattern": "^[^\\x00]*$"},
        description="Words in the name, or the exact SKU.",
    ),
    OpenApiParameter(
        "page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, description="Page number, from 1 (default 1)."
    ),
    OpenApiParameter(
        "page_size",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        description=f"Products per page (default {DEFAULT_PAGE_SIZE}).",
    ),
    OpenApiParameter(
        "If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, description="The ETag of a page already held."
    ),
]
CATALOGUE_HEADERS_DOC = (
    "A page of the products on sale, by name; `price` in kopecks. `Link` names the next and previous "
    'pages (rel="next", rel="prev"), `X-Total-Count` the products that match. Every answer has an '
    "`ETag` and `Cache-Control`; with `If-None-Match` set to the current ETag the answer is 304, no body."
)


def named_schema(summary: str):
    return extend_schema(
        summary=summary,
        responses={200: NamedSerializer(many=True), 304: OpenApiResponse(description="Not modified.")},
        parameters=CATALOGUE_PARAMETERS[-1:],
    )


def cached_list(request, rows: list[dict]) -> Response:
    """`rows` with an ETag of their content and Cache-Control; 304 when If-None-Match matches."""
    tag = '"' + hashlib.sha256(repr(rows).encode()).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": f"public, max-age={settings.CATALOGUE_CACHE_SECONDS}"}
    if request.headers.get("If-None-Match") == tag:
        return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(rows, headers=headers)


def products_as_json(products: QuerySet[Product]) -> list[dict]:
    """A page of products in ProductSerializer's shape, read as plain rows: a hundred model
    instances through a ModelSerializer cost more than the page's queries. Whether each can be sold
    now comes from the delivery engine (fulfillment.selectors.products_sellability)."""
    fields = ("id", "name", "price_kopecks", "recipient_label", "recipient_pattern", "sku")
    rows = list(products.values_list(*fields))
    verdicts = products_sellability(products=[(row[0], row[5]) for row in rows])
    page = []
    for pk, name, price, label, pattern, _sku in rows:
        verdict = verdicts[pk]
        page.append(
            {
                "id": pk,
                "name": name,
                "price": price,
                "currency": "RUB",
                "recipient_label": label,
                "recipient_pattern": pattern,
                "sellable": verdict.sellable,
                "sellable_again_at": verdict.again_at.isoformat() if verdict.again_at else None,
            }
        )
    return page
