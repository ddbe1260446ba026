"""Request and response shapes of the customer API; validation names every bad field."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from orders.models import Product
from orders.status import UNIT_STATUSES


def _printable(text: str) -> str:
    # Echoing a client's key back must not fail on a lone surrogate when the answer is encoded.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:60]


class StrictFieldsMixin:
    """Unknown fields are refused by name instead of silently dropped (a typo must not pass)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(_printable(str(key)) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {key: ["Unknown field; expected one of: " + ", ".join(self.fields) + "."] for key in unknown}
                )
        return super().to_internal_value(data)


class WholeNumberField(serializers.IntegerField):
    """A JSON integer only: no strings, booleans or fractions."""

    default_error_messages = {"invalid": "Must be a whole number (a JSON integer, not a string)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class ProductSerializer(serializers.ModelSerializer):
    price = serializers.IntegerField(source="price_kopecks", help_text="Price of one unit in kopecks.")
    currency = serializers.SerializerMethodField()
    recipient_label = serializers.CharField(help_text='What the recipient is, e.g. "Phone number".')
    recipient_pattern = serializers.CharField(
        help_text="Regular expression the whole recipient must match; empty: any non-blank text."
    )

    class Meta:
        model = Product
        fields = ("id", "name", "price", "currency", "recipient_label", "recipient_pattern")

    def get_currency(self, obj) -> str:
        return "RUB"


class OrderItemInSerializer(StrictFieldsMixin, serializers.Serializer):
    product = WholeNumberField(min_value=1, max_value=2**63 - 1, help_text="Product id from GET /api/products.")
    quantity = WholeNumberField(min_value=1, help_text="Units of this product (1..ORDER_MAX_UNITS).")
    recipient = serializers.CharField(max_length=100, help_text="Phone number, player id... per the product.")

    def validate_quantity(self, value: int) -> int:
        if value > settings.ORDER_MAX_UNITS:
            raise serializers.ValidationError(f"At most {settings.ORDER_MAX_UNITS} units per order.")
        return value

    def validate_recipient(self, value: str) -> str:
        return value.strip()


class OrderCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    email = serializers.EmailField(max_length=254, help_text="Where the codes are sent.")
    items = serializers.ListField(child=OrderItemInSerializer(), allow_empty=False, max_length=100)

    def validate(self, attrs):
        items = attrs["items"]
        total = sum(item["quantity"] for item in items)
        if total > settings.ORDER_MAX_UNITS:
            raise serializers.ValidationError(
                {"items": [f"An order holds at most {settings.ORDER_MAX_UNITS} units; this one has {total}."]}
            )
        ids = {item["product"] for item in items}
        products = {p.pk: p for p in Product.objects.filter(pk__in=ids, is_active=True)}
        errors: list[dict] = []
        for item in items:
            product = products.get(item["product"])
            error: dict[str, list[str]] = {}
            if product is None:
                error["product"] = [f"No product with id {item['product']} is on sale; see GET /api/products."]
            elif not product.recipient_is_valid(item["recipient"]):
                label = product.recipient_label or "recipient"
                hint = f" (format: {product.recipient_pattern})" if product.recipient_pattern else ""
                error["recipient"] = [f"Enter a valid {label} for {product.name}{hint}."]
            else:
                item["product_obj"] = product
            errors.append(error)
        if any(errors):
            raise serializers.ValidationError({"items": errors})
        return attrs


class OrderCreatedSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The order's public id (also the OrderId at T-Bank).")
    status = serializers.CharField()
    amount = serializers.IntegerField(help_text="Kopecks.")
    payment_url = serializers.URLField(help_text="Send the customer here to pay.")
    status_url = serializers.URLField(help_text="The customer's status page (HTML).")
    access_token = serializers.CharField(help_text="Pass as ?token= to read the order's status.")
    expires_at = serializers.DateTimeField(help_text="When the payment link expires.", allow_null=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(required=False)


class UnitSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=UNIT_STATUSES)
    code = serializers.CharField(allow_null=True, help_text="The delivered serial/voucher/PIN; null until delivered.")


class ProductRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class OrderItemOutSerializer(serializers.Serializer):
    product = ProductRefSerializer()
    quantity = serializers.IntegerField()
    recipient = serializers.CharField()
    unit_price = serializers.IntegerField(help_text="Kopecks.")
    units = UnitSerializer(many=True)


class OrderStatusSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.ChoiceField(choices=["new", "paid", "fulfilled", "cancelled", "refunded"])
    amount = serializers.IntegerField(help_text="Kopecks.")
    refunded_amount = serializers.IntegerField(help_text="Kopecks returned to the customer.")
    email = serializers.EmailField()
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    items = OrderItemOutSerializer(many=True)
