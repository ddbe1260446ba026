"""Products, orders, order items and the audit log of payment notifications."""

from __future__ import annotations

from django.db import models

from orders.state import OrderStatus


class Product(models.Model):
    name = models.CharField(max_length=200)
    sku = models.CharField(
        "provider SKU",
        max_length=100,
        unique=True,
        help_text="The provider's product code (Digiflazz buyer_sku_code).",
    )
    price_kopecks = models.PositiveBigIntegerField(help_text="Shop price in kopecks.")
    is_active = models.BooleanField(default=True)
    max_provider_price = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="Highest price the provider may charge per unit (sent as max_price); empty means no cap.",
    )
    provider_price = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Provider's last known price, from the price-list sync."
    )
    provider_available = models.BooleanField(
        null=True, blank=True, help_text="Whether the provider sold this SKU at the last sync."
    )
    provider_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class StatusAssignmentError(Exception):
    """Raised when code tries to change an order's status by saving the model."""


class Order(models.Model):
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.NEW, db_index=True)
    amount_kopecks = models.PositiveBigIntegerField()
    customer_email = models.EmailField(blank=True)
    payment_id = models.CharField("T-Bank PaymentId", max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True, db_index=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("retry_fulfillment", "Can retry fulfillment of paid orders")]

    def __str__(self) -> str:
        return f"Order {self.pk}"

    def save(self, *args, **kwargs) -> None:
        # The status machine (orders.state) is the only writer of `status`; a save() that
        # changed it would bypass the legality check and the race protection.
        update_fields = kwargs.get("update_fields")
        if self._state.adding:
            if self.status != OrderStatus.NEW:
                raise StatusAssignmentError("A new order starts as NEW; use orders.state to move it.")
            super().save(*args, **kwargs)
            self._loaded_status = self.status
            return
        assigned = "status" in self.__dict__  # False when the field was deferred and never set
        if (update_fields is None or "status" in update_fields) and assigned:
            if self.status != getattr(self, "_loaded_status", None):
                raise StatusAssignmentError(
                    f"Order {self.pk}: status changes go through orders.state.order_transition()."
                )
        # An existing row's status column is never written here: this instance may have been
        # loaded before a transition, and writing its status back would silently undo it.
        if update_fields is None:
            deferred = self.get_deferred_fields()
            update_fields = [
                f.attname
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name != "status" and f.attname not in deferred
            ]
        kwargs["update_fields"] = [name for name in update_fields if name != "status"]
        super().save(*args, **kwargs)

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_status = instance.__dict__.get("status")
        return instance

    def refresh_from_db(self, *args, **kwargs) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._loaded_status = self.status

    @property
    def tbank_order_id(self) -> str:
        """The OrderId this order has at T-Bank."""
        return str(self.pk)


class OrderItem(models.Model):
    """One line of an order. What was sold is kept on the item itself (`sku`, `provider`,
    `max_provider_price`, `unit_price_kopecks`), copied from the product when the order is made:
    editing the product later changes new orders, never what an existing order's units buy."""

    order = models.ForeignKey(Order, related_name="items", on_delete=models.PROTECT)
    product = models.ForeignKey(Product, related_name="order_items", on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField(default=1)
    unit_price_kopecks = models.PositiveBigIntegerField()
    recipient = models.CharField(max_length=100, help_text="Where the goods go: a phone number, a game account id...")
    sku = models.CharField(
        "provider SKU as sold", max_length=100, default="", help_text="The product's SKU when the order was made."
    )
    provider = models.CharField(
        max_length=50,
        blank=True,
        default="",
        help_text="The provider chosen when the order was made; empty (older items): the configured provider.",
    )
    max_provider_price = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The product's max provider price when the order was made; empty: no cap."
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product.name} for {self.recipient}"

    @staticmethod
    def sold_as(product: Product) -> dict:
        """The fields that fix what an item of `product` buys, as of now."""
        from django.conf import settings

        return {
            "sku": product.sku,
            "provider": settings.FULFILLMENT_PROVIDER,
            "max_provider_price": product.max_provider_price,
            "unit_price_kopecks": product.price_kopecks,
        }


class NotificationVerdict(models.TextChoices):
    APPLIED = "applied", "Applied (order changed)"
    RECORDED = "recorded", "Recorded (nothing to change)"
    DUPLICATE = "duplicate", "Duplicate (already applied)"
    IGNORED = "ignored", "Ignored (would downgrade the order)"
    FORBIDDEN = "forbidden", "Forbidden (bad token or terminal)"
    MALFORMED = "malformed", "Malformed body"
    UNKNOWN_ORDER = "unknown_order", "Unknown OrderId"
    AMOUNT_MISMATCH = "amount_mismatch", "Amount does not match the order"
    NEEDS_REVIEW = "needs_review", "Needs staff review"


class PaymentNotification(models.Model):
    """One notification as received from T-Bank, with what we made of it.

    `raw_body` is the body as received with the Token replaced (it is derived from the
    terminal password); nothing else secret is ever in a notification.
    """

    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    order = models.ForeignKey(Order, null=True, blank=True, related_name="notifications", on_delete=models.SET_NULL)
    order_ref = models.CharField("OrderId as sent", max_length=100, blank=True, db_index=True)
    bank_status = models.CharField(max_length=40, blank=True)
    payment_id = models.CharField(max_length=64, blank=True, db_index=True)
    amount_kopecks = models.BigIntegerField(null=True, blank=True)
    verdict = models.CharField(max_length=20, choices=NotificationVerdict.choices)
    http_status = models.PositiveSmallIntegerField()
    detail = models.TextField(blank=True, help_text="What was done, or why not.")
    raw_body = models.TextField(blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.bank_status or '?'} for {self.order_ref or '?'} ({self.verdict})"
