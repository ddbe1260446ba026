"""Customer API views: thin, over orders.services.checkout and orders.status."""

from __future__ import annotations

import re

from django.utils import translation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle
from rest_framework.views import APIView

from orders.api.parsers import StrictJSONParser
from orders.api.serializers import (
    ErrorSerializer,
    OrderCreatedSerializer,
    OrderCreateSerializer,
    OrderStatusSerializer,
    ProductSerializer,
)
from orders.models import Product
from orders.services.checkout import (
    checkout_client_scope,
    checkout_request_hash,
    idempotency_key_find,
    order_checkout,
    order_checkout_repeat,
)
from orders.services.lifecycle import ItemSpec
from orders.status import order_for_customer, order_status_data

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


class OrderCreateThrottle(SimpleRateThrottle):
    """Order creations per client address (REST_FRAMEWORK NUM_PROXIES decides which address)."""

    scope = "order_create"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ProductListView(APIView):
    @extend_schema(summary="The catalogue: products on sale", responses=ProductSerializer(many=True))
    def get(self, request):
        products = Product.objects.filter(is_active=True).order_by("name", "id")
        return Response(ProductSerializer(products, many=True).data)


def _error(http_status: int, detail: str, code: str) -> Response:
    return Response({"detail": detail, "code": code}, status=http_status)


class OrderCreateView(APIView):
    parser_classes = [StrictJSONParser]
    throttle_classes = [OrderCreateThrottle]

    @extend_schema(
        summary="Create an order and its T-Bank payment",
        description=(
            "Validates everything before anything is written. Creates the order NEW and calls T-Bank Init; "
            "send the customer to `payment_url`. With an `Idempotency-Key` header, repeating the same request "
            "returns the same answer (no second order, no second payment); after a 503, repeating it tries to "
            "start the payment again for the same order."
        ),
        request=OrderCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Any unique string (up to 255 printable ASCII characters), e.g. a UUID.",
            )
        ],
        responses={
            201: OrderCreatedSerializer,
            400: OpenApiResponse(description="Invalid body: each bad field is named (DRF error format)."),
            409: OpenApiResponse(ErrorSerializer, description="A request with this Idempotency-Key is in progress."),
            413: OpenApiResponse(ErrorSerializer, description="Body too large."),
            422: OpenApiResponse(ErrorSerializer, description="Idempotency-Key reused with another body."),
            429: OpenApiResponse(ErrorSerializer, description="Too many orders from this address; retry later."),
            503: OpenApiResponse(ErrorSerializer, description="T-Bank could not start the payment; order kept NEW."),
        },
    )
    def post(self, request):
        key = request.headers.get("Idempotency-Key", "")
        if key and not IDEMPOTENCY_KEY.fullmatch(key):
            return Response(
                {"Idempotency-Key": ["Use 1 to 255 printable ASCII characters without spaces (a UUID is ideal)."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        data = request.data
        request_hash = checkout_request_hash(data)
        # A key is the client's own: its first answer (with the order's access_token) never goes
        # to another client that happens to send the same key and body.
        client_scope = checkout_client_scope(BaseThrottle().get_ident(request)) if key else ""
        if key:
            record = idempotency_key_find(key=key, client_scope=client_scope)
            if record is not None:
                answer = order_checkout_repeat(record=record, request_hash=request_hash)
                return Response(answer.body, status=answer.http_status)
        serializer = OrderCreateSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        items = [
            ItemSpec(product=item["product_obj"], recipient=item["recipient"], quantity=item["quantity"])
            for item in serializer.validated_data["items"]
        ]
        answer = order_checkout(
            items=items,
            email=serializer.validated_data["email"],
            language=translation.get_language() or "",
            idempotency_key=key,
            request_hash=request_hash,
            client_scope=client_scope,
        )
        return Response(answer.body, status=answer.http_status)


class OrderStatusView(APIView):
    @extend_schema(
        summary="The customer's view of an order, with the delivered codes",
        parameters=[
            OpenApiParameter(
                "token", OpenApiTypes.STR, OpenApiParameter.QUERY, required=True, description="access_token"
            )
        ],
        responses={200: OrderStatusSerializer, 404: OpenApiResponse(ErrorSerializer, description="No such order.")},
    )
    def get(self, request, public_id: str):
        order = order_for_customer(public_id=public_id, token=request.query_params.get("token", ""))
        if order is None:
            # The same answer for a wrong token and an unknown id: a token cannot be probed.
            return _error(404, "No order with this id and token.", "not_found")
        return Response(OrderStatusSerializer(order_status_data(order)).data)
