"""Customer API views: thin, over orders.services.checkout and orders.status."""

from __future__ import annotations

import re

from django.utils import translation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle
from rest_framework.views import APIView

from orders.api.catalogue import (
    CATALOGUE_HEADERS_DOC,
    CATALOGUE_PARAMETERS,
    cached_list,
    catalogue_response,
    named_list,
    named_schema,
    products_as_json,
)
from orders.api.errors import api_exception_handler, error_response, field_error
from orders.api.parsers import StrictJSONParser
from orders.api.serializers import (
    ErrorSerializer,
    OrderCreatedSerializer,
    OrderCreateSerializer,
    OrderStatusSerializer,
    ProductSerializer,
    order_items_resolve,
)
from orders.capacity import CHECKOUT_GATE, CHECKOUT_RETRY_AFTER_SECONDS
from orders.models import Brand, Category
from orders.services.checkout import (
    checkout_client_scope,
    checkout_request_hash,
    idempotency_key_find,
    order_checkout,
    order_checkout_repeat,
)
from orders.status import order_for_customer, order_status_data

#: An Idempotency-Key: 1 to 255 printable ASCII characters without spaces (the schema's pattern).
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")


def _error_responses(**described: str) -> dict[int, OpenApiResponse]:
    """Error answers, each in the one error shape (ErrorSerializer), keyed by status."""
    return {int(code[1:]): OpenApiResponse(ErrorSerializer, description=text) for code, text in described.items()}


class OrderCreateThrottle(SimpleRateThrottle):
    """Order creations per client address (REST_FRAMEWORK NUM_PROXIES decides which address)."""

    scope = "order_create"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class JSONOnlyNegotiation(DefaultContentNegotiation):
    """Answers are JSON whatever the Accept header says (the schema documents JSON only): a
    browser gets the JSON, not DRF's browsable page, and no client is refused with a 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class CustomerAPIView(APIView):
    """Base of the customer API's views: JSON answers, every refusal in the one error shape."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONOnlyNegotiation

    def get_exception_handler(self):
        return api_exception_handler


class ProductListView(CustomerAPIView):
    """Products on sale, by name; `price` in kopecks (orders.api.catalogue)."""

    @extend_schema(
        summary="The catalogue: products on sale",
        description=CATALOGUE_HEADERS_DOC,
        parameters=CATALOGUE_PARAMETERS,
        responses={
            200: ProductSerializer(many=True),
            304: OpenApiResponse(description="Not modified: the page held (If-None-Match) is current."),
            400: OpenApiResponse(ErrorSerializer, description="A filter or page parameter is not valid."),
        },
    )
    def get(self, request):
        return catalogue_response(request, products_as_json)


class CategoryListView(CustomerAPIView):
    """Categories with products on sale."""

    @named_schema("Categories with products on sale")
    def get(self, request):
        return cached_list(request, named_list(Category))


class BrandListView(CustomerAPIView):
    """Brands with products on sale."""

    @named_schema("Brands with products on sale")
    def get(self, request):
        return cached_list(request, named_list(Brand))


class OrderCreateView(CustomerAPIView):
    parser_classes = [StrictJSONParser]
    throttle_classes = [OrderCreateThrottle]

    @extend_schema(
        summary="Create an order and its T-Bank payment",
        description=(
            "Validates everything before anything is written. Creates the order NEW and calls T-Bank Init; "
            "send the customer to `payment_url`. With an `Idempotency-Key` header, repeating the same request "
            "returns the same answer (no second order, no second payment); after a 503, repeating it tries to "
            "start the payment again for the same order.\n\n"
            "A request that breaks this schema is refused with 400; a request the schema allows but that "
            "cannot be sold as asked (a product not on sale, a recipient not in its product's "
            "`recipient_pattern`, more than ORDER_MAX_UNITS units in all) with 422. Every refusal has the "
            "`Error` shape; `errors` names each field at fault.\n\n"
            "A 503 with `code` `checkout_busy` and `Retry-After` means the shop has as many payments being started "
            "as it takes at once: nothing was written; repeat the request after the seconds given."
        ),
        request=OrderCreateSerializer,
        examples=[
            OpenApiExample(
                "Two top-ups for one player",
                request_only=True,
                value={"email": "you@example.com", "items": [{"product": 3, "quantity": 2, "recipient": "12345678"}]},
            )
        ],
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "minLength": 1, "maxLength": 255, "pattern": IDEMPOTENCY_KEY_PATTERN},
                OpenApiParameter.HEADER,
                description="Any unique string of 1 to 255 printable ASCII characters without spaces, e.g. a UUID. "
                "Recommended: a repeat with the same key and body never creates a second order or payment.",
            ),
            OpenApiParameter(
                "Retry-After",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[429],
                required=True,
                description="Seconds to wait before the next order from this address.",
            ),
        ],
        responses={
            201: OpenApiResponse(OrderCreatedSerializer, description="The order, NEW, with its payment link."),
            **_error_responses(
                _400="The request breaks the schema (code `invalid`; `parse_error` for a body that is not "
                "JSON): each bad field is named in `errors`. Nothing is written or sent.",
                _409="A request with this Idempotency-Key is being processed (`idempotency_key_in_progress`); "
                "repeat it in a few seconds.",
                _413="The body is over 64 KiB (`body_too_large`).",
                _415="The body is not `application/json` (`unsupported_media_type`).",
                _422="A well-formed order that cannot be sold as asked (`order_not_accepted`: `errors` says "
                "which item, with code `not_on_sale`, `not_sellable`, `recipient_format` or `too_many_units`), or an "
                "Idempotency-Key used before with another body (`idempotency_key_reused`). Nothing is written.",
                _429="Too many orders from this address (`throttled`); retry after `Retry-After` seconds.",
                _503="T-Bank could not start the payment (`payment_unavailable`); the order is kept NEW, and "
                "repeating the request with the same Idempotency-Key tries again. Or the shop is starting as many "
                "payments as it takes at once (`checkout_busy`, with `Retry-After`): nothing was written.",
            ),
        },
    )
    def post(self, request):
        key = request.headers.get("Idempotency-Key")
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            message = "Use 1 to 255 printable ASCII characters without spaces (a UUID is ideal), or send no key."
            return error_response(
                status.HTTP_400_BAD_REQUEST,
                f"The Idempotency-Key header is invalid: {message}",
                "invalid",
                [field_error("Idempotency-Key", message)],
            )
        key = key or ""
        # Every checkout may wait on the bank: only so many at once per process (orders/capacity.py).
        with CHECKOUT_GATE.admit() as admitted:
            if not admitted:
                response = error_response(
                    503,
                    "The shop is starting as many payments as it can right now; nothing was created. Repeat the "
                    f"request in {CHECKOUT_RETRY_AFTER_SECONDS} seconds (with the same Idempotency-Key).",
                    "checkout_busy",
                )
                response["Retry-After"] = str(CHECKOUT_RETRY_AFTER_SECONDS)
                return response
            return self._checkout(request, key)

    def _checkout(self, request, key: str) -> Response:
        data = request.data
        # The schema first (400): a body that breaks it is refused the same with or without a key.
        serializer = OrderCreateSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        request_hash = checkout_request_hash(data)
        # A key is the client's own: its first answer (with the order's access_token) never goes
        # to another client that happens to send the same key and body.
        client_scope = checkout_client_scope(BaseThrottle().get_ident(request)) if key else ""
        if key:
            record = idempotency_key_find(key=key, client_scope=client_scope)
            if record is not None:
                # Before the catalogue: a repeat gets the first answer even if a product left the shop since.
                return self._answer(order_checkout_repeat(record=record, request_hash=request_hash))
        items = order_items_resolve(serializer.validated_data["items"])
        answer = order_checkout(
            items=items,
            email=serializer.validated_data["email"],
            language=translation.get_language() or "",
            idempotency_key=key,
            request_hash=request_hash,
            client_scope=client_scope,
        )
        return self._answer(answer)

    @staticmethod
    def _answer(answer) -> Response:
        if answer.http_status >= 400:
            # The service's refusals (409, 422, 503, replayed ones too) in the one error shape.
            return error_response(answer.http_status, answer.body["detail"], answer.body["code"])
        return Response(answer.body, status=answer.http_status)


class OrderStatusView(CustomerAPIView):
    """An order as its customer sees it: status, amounts, and each unit with its code once delivered."""

    @extend_schema(
        summary="The customer's view of an order, with the delivered codes",
        parameters=[
            OpenApiParameter(
                "token",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=True,
                description="The order's `access_token` (from the answer of POST /api/orders).",
            )
        ],
        responses={
            200: OrderStatusSerializer,
            **_error_responses(
                _400="No `token` given (`invalid`).",
                _404="No order with this id and token (`not_found`); a wrong token answers the same as an unknown id.",
            ),
        },
    )
    def get(self, request, public_id: str):
        token = request.query_params.get("token")
        if token is None:
            message = "Give the order's access_token as ?token= (from the answer of POST /api/orders)."
            errors = [field_error("token", message, "required")]
            return error_response(status.HTTP_400_BAD_REQUEST, f"The token is missing: {message}", "invalid", errors)
        order = order_for_customer(public_id=public_id, token=token)
        if order is None:
            # The same answer for a wrong token and an unknown id: a token cannot be probed.
            return error_response(404, "No order with this id and token.", "not_found")
        return Response(OrderStatusSerializer(order_status_data(order)).data)
