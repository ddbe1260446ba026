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
    """Raised when code tries to change an order's status (or a field the status machine owns,
    such as payment_id or paid_at) by saving the model."""


#: Written only by the status machine (orders.state), in the conditional UPDATE of a transition.
MACHINE_FIELDS = frozenset(
    {"status", "payment_id", "status_changed_at", "paid_at", "fulfilled_at", "cancelled_at", "refunded_at"}
)


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
        """Insert a NEW order, or write the fields changed since this instance was loaded.

        An instance may have been loaded before a transition (the admin's change form, a
        long-running task): writing all its fields back would silently undo the payment. So an
        existing row gets only the fields this instance changed, and never a field the status
        machine owns (MACHINE_FIELDS): changing one of those here raises StatusAssignmentError.
        """
        if self._state.adding:
            if self.status != OrderStatus.NEW:
                raise StatusAssignmentError("A new order starts as NEW; use orders.state to move it.")
            super().save(*args, **kwargs)
            self._remember_loaded_values()
            return
        loaded = getattr(self, "_loaded_values", {})
        update_fields = kwargs.get("update_fields")
        candidates = (
            [f.attname for f in self._meta.concrete_fields if not f.primary_key]
            if update_fields is None
            else [self._meta.get_field(name).attname for name in update_fields]
        )
        changed = []
        for attname in candidates:
            if attname not in self.__dict__:
                continue  # deferred and never assigned: nothing to write
            if attname in loaded and self.__dict__[attname] == loaded[attname]:
                continue  # unchanged since load: writing it back could only revert someone else's change
            if attname in MACHINE_FIELDS:
                what = "status changes" if attname == "status" else f"{attname} (written with the status)"
                raise StatusAssignmentError(f"Order {self.pk}: {what} go through orders.state.order_transition().")
            changed.append(attname)
        kwargs["update_fields"] = changed
        super().save(*args, **kwargs)
        loaded.update({attname: self.__dict__[attname] for attname in changed})

    def _remember_loaded_values(self) -> None:
        self._loaded_values = {
            f.attname: self.__dict__[f.attname] for f in self._meta.concrete_fields if f.attname in self.__dict__
        }

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._remember_loaded_values()
        return instance

    def refresh_from_db(self, using=None, fields=None, from_queryset=None) -> None:
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        if fields is None:
            self._remember_loaded_values()
            return
        # Only what was read is known to match the row; other in-memory edits stay unsaved changes.
        loaded = getattr(self, "_loaded_values", {})
        for name in fields:
            attname = self._meta.get_field(name).attname
            if attname in self.__dict__:
                loaded[attname] = self.__dict__[attname]
        self._loaded_values = loaded

    @property
    def tbank_order_id(self) -> str:
        """The OrderId this order has at T-Bank."""
        return str(self.pk)


class OrderItem(models.Model):
    order = models.ForeignKey(Order, related_name="items", on_delete=models.PROTECT)
    product = models.ForeignKey(Product, related_name="order_items", on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField(default=1)
    unit_price_kopecks = models.PositiveBigIntegerField()
    recipient = models.CharField(max_length=100, help_text="Where the goods go: a phone number, a game account id...")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product.name} for {self.recipient}"


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

    For an authenticated notification `raw_body` is the body as received with the Token
    replaced (it is derived from the terminal password); nothing else secret is ever in a
    notification. For a request that failed authentication (wrong source, not a notification,
    bad Token) it is only the first characters: the size and SHA-256 identify the rest.
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
    authenticated = models.BooleanField(
        default=False, help_text="Came from an allowed source with a valid TerminalKey and Token."
    )
    raw_body = models.TextField(
        blank=True, help_text="The body as sent, Token masked; only its beginning when not authenticated."
    )
    body_sha256 = models.CharField("body SHA-256", max_length=64, blank=True)
    body_size = models.PositiveIntegerField("body size (bytes)", null=True, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.bank_status or '?'} for {self.order_ref or '?'} ({self.verdict})"
