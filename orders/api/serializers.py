"""Request and response shapes of the customer API; validation names every bad field."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.utils import translation
from rest_framework import serializers

from fulfillment.selectors import products_sellability
from orders.api.errors import ERROR_CODES, OrderNotAccepted, field_error
from orders.models import Product
from orders.services.lifecycle import ItemSpec
from orders.state import OrderStatus
from orders.status import UNIT_STATUSES

#: Largest id a client may send: JavaScript's Number.MAX_SAFE_INTEGER, so every client represents
#: every id exactly (a bigint beyond it is rounded by JSON.parse, 2**63-1 became ...776000).
MAX_ID = 2**53 - 1

#: A recipient: at most 100 characters, no control characters (C0, DEL, C1), at least one that is
#: not a space. `\Z`, not `$`: Python's `$` also matches before a final newline. The same pattern
#: is published in the OpenAPI schema, so a generated client checks exactly what we check.
RECIPIENT_TEXT = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*\Z"
RECIPIENT_MAX_LENGTH = 100


def _printable(text: str) -> str:
    # Echoing a client's key back must not fail on a lone surrogate when the answer is encoded.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:60]


class StrictFieldsMixin:
    """Unknown fields are refused by name instead of silently dropped (a typo must not pass);
    the schema says so with `additionalProperties: false` (orders.api.schema)."""

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


class StrictCharField(serializers.CharField):
    """A JSON string only: a number is refused, not turned into text (DRF's CharField takes 0 as "0")."""

    default_error_messages = {"invalid": "Must be text (a JSON string)."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    """A JSON string holding an email address exactly: no number, no surrounding spaces trimmed away."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ProductSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(read_only=True, min_value=1, max_value=MAX_ID)
    price = serializers.IntegerField(source="price_kopecks", help_text="Price of one unit in kopecks.")
    currency = serializers.SerializerMethodField()
    recipient_label = serializers.CharField(help_text='What the recipient is, e.g. "Phone number".')
    recipient_pattern = serializers.CharField(
        help_text="Regular expression the whole recipient must match; empty: any non-blank text."
    )

    sellable = serializers.BooleanField(
        help_text="Whether it can be ordered now: its supplier lists it, in stock, outside its daily cut-off."
    )
    sellable_again_at = serializers.DateTimeField(
        allow_null=True, help_text="When it is expected to be sellable again (null: sellable now, or not known)."
    )

    class Meta:
        model = Product
        fields = (
            "id",
            "name",
            "price",
            "currency",
            "recipient_label",
            "recipient_pattern",
            "sellable",
            "sellable_again_at",
        )

    def get_currency(self, obj) -> str:
        return "RUB"


class OrderItemInSerializer(StrictFieldsMixin, serializers.Serializer):
    """One line of an order: a product, how many units, and whom they go to."""

    product = WholeNumberField(min_value=1, max_value=MAX_ID, help_text="Product id from GET /api/products.")
    quantity = WholeNumberField(min_value=1, help_text="Units of this product (1..ORDER_MAX_UNITS).")
    recipient = StrictCharField(
        max_length=RECIPIENT_MAX_LENGTH,
        trim_whitespace=False,
        validators=[
            RegexValidator(
                RECIPIENT_TEXT, message="Enter the recipient as text with no control characters, not only spaces."
            )
        ],
        help_text="Phone number, player id... as the product's `recipient_pattern` says (surrounding spaces "
        "are dropped). The product's own format is checked after the schema: a mismatch is a 422.",
    )

    def get_fields(self):
        fields = super().get_fields()
        # ORDER_MAX_UNITS is read when the serializer is built, so the schema and the check follow
        # the setting (a class attribute would freeze it at import).
        fields["quantity"] = WholeNumberField(
            min_value=1,
            max_value=settings.ORDER_MAX_UNITS,
            help_text="Units of this product (at most ORDER_MAX_UNITS units in the whole order).",
        )
        return fields

    def validate_recipient(self, value: str) -> str:
        return value.strip()


class OrderCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    """An order: where the codes go and what to buy. Unknown fields are refused."""

    # Only what the schema can say is checked here (a failure is a 400); the catalogue is checked
    # afterwards by order_items_resolve, so a request the schema allows is refused with a 422.

    email = StrictEmailField(max_length=254, help_text="Where the codes are sent.")

    def get_fields(self):
        fields = super().get_fields()
        fields["items"] = serializers.ListField(
            child=OrderItemInSerializer(),
            allow_empty=False,
            min_length=1,
            max_length=settings.ORDER_MAX_UNITS,
            help_text="What to buy: 1..ORDER_MAX_UNITS items, together at most ORDER_MAX_UNITS units.",
        )
        return fields


def order_items_resolve(items: list[dict]) -> list[ItemSpec]:
    """The validated `items` against the catalogue: each product on sale, each recipient in its
    product's format, at most ORDER_MAX_UNITS units in all. Raises OrderNotAccepted (422)."""
    errors: list[dict[str, str]] = []
    total = sum(item["quantity"] for item in items)
    if total > settings.ORDER_MAX_UNITS:
        errors.append(
            field_error(
                "/items",
                f"An order holds at most {settings.ORDER_MAX_UNITS} units; this one has {total}. "
                "Split it into several orders.",
                "too_many_units",
            )
        )
    ids = {item["product"] for item in items}
    products = {p.pk: p for p in Product.objects.filter(pk__in=ids, is_active=True)}
    verdicts = products_sellability(products=[(product.pk, product.sku) for product in products.values()])
    specs = []
    for index, item in enumerate(items):
        product = products.get(item["product"])
        if product is None:
            errors.append(
                field_error(
                    f"/items/{index}/product",
                    f"No product with id {item['product']} is on sale; see GET /api/products.",
                    "not_on_sale",
                )
            )
        elif not verdicts[product.pk].sellable:
            verdict = verdicts[product.pk]
            again = f" It is expected back at {verdict.again_at.isoformat()}." if verdict.again_at else ""
            with translation.override("en"):  # the API speaks English, like its other messages
                reason = str(verdict.reason)
            errors.append(
                field_error(
                    f"/items/{index}/product",
                    f"{product.name} cannot be ordered now ({reason}).{again} See GET /api/products.",
                    "not_sellable",
                )
            )
        elif not product.recipient_is_valid(item["recipient"]):
            label = product.recipient_label or "recipient"
            hint = f" (format: {product.recipient_pattern})" if product.recipient_pattern else ""
            errors.append(
                field_error(
                    f"/items/{index}/recipient",
                    f"Enter a valid {label} for {product.name}{hint}.",
                    "recipient_format",
                )
            )
        else:
            specs.append(ItemSpec(product=product, recipient=item["recipient"], quantity=item["quantity"]))
    if errors:
        raise OrderNotAccepted(errors)
    return specs


ORDER_STATUSES = OrderStatus.values


class OrderCreatedSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The order's public id (also the OrderId at T-Bank).")
    status = serializers.ChoiceField(
        choices=ORDER_STATUSES, help_text="`new`; a repeat of a request whose order was paid since says so."
    )
    amount = serializers.IntegerField(help_text="Kopecks.")
    payment_url = serializers.URLField(
        allow_blank=True, help_text="Send the customer here to pay; empty when the order is already paid."
    )
    status_url = serializers.URLField(help_text="The customer's status page (HTML).")
    access_token = serializers.CharField(
        help_text="Pass as ?token= to GET /api/orders/{id} (the link `GetOrderStatus` says how)."
    )
    expires_at = serializers.DateTimeField(help_text="When the payment link expires.", allow_null=True)


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(
        allow_blank=True,
        help_text='JSON Pointer into the request body ("/items/0/recipient"; "" for the body as a whole), '
        'or the name of the header at fault ("Idempotency-Key").',
    )
    message = serializers.CharField(help_text="What is wrong with it and how to fix it.")
    code = serializers.CharField(
        help_text="Stable code: required, invalid, null, blank, max_length, min_value, max_value, min_length, "
        "empty, not_a_list, does_not_exist... (400); not_on_sale, not_sellable, recipient_format, too_many_units (422)."
    )


class ErrorSerializer(serializers.Serializer):
    """Every refusal of the customer API has this shape (see orders.api.errors)."""

    detail = serializers.CharField(help_text="What is wrong and how to fix it, for people.")
    code = serializers.CharField(
        help_text="Stable code of the refusal, for programs: "
        + "; ".join(f"`{code}` ({meaning})" for code, meaning in ERROR_CODES.items())
    )
    errors = FieldErrorSerializer(many=True, help_text="One entry per bad field; empty when no field is at fault.")


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
    status = serializers.ChoiceField(choices=ORDER_STATUSES)
    amount = serializers.IntegerField(help_text="Kopecks.")
    refunded_amount = serializers.IntegerField(help_text="Kopecks returned to the customer.")
    # The address as the order was placed (a plain string: it is echoed, not checked again).
    email = serializers.CharField()
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    items = OrderItemOutSerializer(many=True)
