"""Products, orders, order items, payments, refunds, customer emails and the audit of bank traffic."""

from __future__ import annotations

import re
import secrets
import uuid
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from fulfillment_site.display import money
from orders.statuses import OrderStatus, RefundState


def new_access_token() -> str:
    """The secret that lets a customer see their order (and its codes) without an account."""
    return secrets.token_urlsafe(24)


def validate_regex(value: str) -> None:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValidationError(f"{value!r} is not a valid regular expression: {exc}.") from exc


def new_public_id() -> str:
    """A random order id for the outside world (the OrderId sent to T-Bank, the customer's URLs):
    not sequential, so one order's id tells nothing about another's."""
    return secrets.token_hex(12)


def new_external_request_id() -> str:
    """A refund's own random id, sent to T-Bank as ExternalRequestId (UUID v4, as «Долями» requires)."""
    return str(uuid.uuid4())


class Product(models.Model):
    name = models.CharField(_("name"), max_length=200)
    sku = models.CharField(
        _("provider SKU"),
        max_length=100,
        unique=True,
        help_text=_("The provider's product code (Digiflazz buyer_sku_code)."),
    )
    price_kopecks = models.PositiveBigIntegerField(_("shop price (kopecks)"), help_text=_("Shop price in kopecks."))
    is_active = models.BooleanField(_("on sale"), default=True)
    max_provider_price = models.PositiveBigIntegerField(
        _("max provider price"),
        null=True,
        blank=True,
        help_text=_("Highest price the provider may charge per unit (sent as max_price); empty means no cap."),
    )
    provider_price = models.PositiveBigIntegerField(
        _("provider price"),
        null=True,
        blank=True,
        help_text=_("Provider's last known price, from the price-list sync."),
    )
    provider_available = models.BooleanField(
        _("provider available"),
        null=True,
        blank=True,
        help_text=_("Whether the provider sold this SKU at the last sync."),
    )
    provider_synced_at = models.DateTimeField(_("synced with provider"), null=True, blank=True)
    recipient_label = models.CharField(
        _("recipient label"),
        max_length=100,
        blank=True,
        help_text=_('What the customer must give as the recipient, e.g. "Phone number" or "Player ID".'),
    )
    recipient_pattern = models.CharField(
        _("recipient pattern"),
        max_length=500,
        blank=True,
        validators=[validate_regex],
        help_text=_(
            "Regular expression the whole recipient must match (e.g. 08[0-9]{8,11}); empty: any non-blank text."
        ),
    )
    category = models.ForeignKey(
        "orders.Category",
        null=True,
        blank=True,
        related_name="products",
        on_delete=models.SET_NULL,
        verbose_name=_("category"),
    )
    brand = models.ForeignKey(
        "orders.Brand",
        null=True,
        blank=True,
        related_name="products",
        on_delete=models.SET_NULL,
        verbose_name=_("brand"),
    )
    manual_price_kopecks = models.PositiveBigIntegerField(
        _("manual price (kopecks)"),
        null=True,
        blank=True,
        help_text=_("When set, the shop price is this, whatever the price rules say."),
    )
    cost_kopecks = models.PositiveBigIntegerField(
        _("cost (kopecks)"),
        null=True,
        blank=True,
        help_text=_("The supplier price in roubles at the rate the shop price was made with."),
    )
    priced_rate = models.DecimalField(_("rate priced at"), max_digits=20, decimal_places=12, null=True, blank=True)
    priced_at = models.DateTimeField(_("priced"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["name"]
        # The catalogue's pages (orders.api.catalogue): products on sale by name, read in index order.
        indexes = [models.Index(fields=["name", "id"], condition=Q(is_active=True), name="product_on_sale_by_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"

    def recipient_is_valid(self, recipient: str) -> bool:
        """Whether `recipient` (already stripped) is acceptable for this product."""
        if not recipient:
            return False
        if not self.recipient_pattern:
            return True
        try:
            return re.fullmatch(self.recipient_pattern, recipient) is not None
        except re.error:
            return False  # a broken pattern saved before validation: refuse rather than accept anything


class StatusAssignmentError(Exception):
    """Raised when code tries to change an order's status (or a field the status machine owns,
    such as payment_id or paid_at) by saving the model."""


#: Written only by the status machine (orders.state), in the conditional UPDATE of a transition.
MACHINE_FIELDS = frozenset(
    {"status", "payment_id", "status_changed_at", "paid_at", "fulfilled_at", "cancelled_at", "refunded_at"}
)


class Order(models.Model):
    public_id = models.CharField(
        _("order number"),
        max_length=36,
        unique=True,
        default=new_public_id,
        editable=False,
        help_text=_("The OrderId sent to T-Bank."),
    )
    status = models.CharField(
        _("status"), max_length=20, choices=OrderStatus.choices, default=OrderStatus.NEW, db_index=True
    )
    amount_kopecks = models.PositiveBigIntegerField(_("amount (kopecks)"))
    customer_email = models.EmailField(_("customer email"), blank=True)
    access_token = models.CharField(
        _("access token"),
        max_length=64,
        default=new_access_token,
        editable=False,
        help_text=_("The customer's key to the status page."),
    )
    language = models.CharField(
        _("language"), max_length=10, blank=True, help_text=_("The customer's language (emails, pages).")
    )
    payment_id = models.CharField(_("T-Bank PaymentId"), max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    status_changed_at = models.DateTimeField(_("status changed"), null=True, blank=True)
    paid_at = models.DateTimeField(_("paid"), null=True, blank=True, db_index=True)
    fulfilled_at = models.DateTimeField(_("fulfilled"), null=True, blank=True)
    cancelled_at = models.DateTimeField(_("cancelled"), null=True, blank=True)
    refunded_at = models.DateTimeField(_("refunded"), null=True, blank=True)

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-id"]
        permissions = [("retry_fulfillment", _("Can retry fulfillment of paid orders"))]
        indexes = [
            # The admin's date filter and sort; PAID orders by age for "paid for too long".
            models.Index(fields=["created_at"], name="order_created"),
            models.Index(fields=["paid_at"], name="order_paid_open", condition=Q(status="paid"), include=["id"]),
            # Refunded orders by when: the reconciliation sweep looks at the recent ones only.
            models.Index(fields=["refunded_at"], name="order_refunded_recent", condition=Q(status="refunded")),
        ]

    def __str__(self) -> str:
        # The public id is the order's one name: the customer's page and emails show it, so staff see it too.
        return _("Order %(number)s") % {"number": self.public_id}

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
        return self.public_id


def order_public_id(pk: int) -> str | None:
    """The public id (the OrderId the bank and the customer know) of the order with this pk."""
    return Order.objects.filter(pk=pk).values_list("public_id", flat=True).first()


class OrderItem(models.Model):
    """One line of an order. What was sold is kept on the item itself (`sku`, `provider`,
    `max_provider_price`, `provider_price`, `unit_price_kopecks`), copied from the product when the order is made:
    editing the product later changes new orders, never what an existing order's units buy."""

    order = models.ForeignKey(Order, related_name="items", on_delete=models.PROTECT, verbose_name=_("order"))
    product = models.ForeignKey(
        Product, related_name="order_items", on_delete=models.PROTECT, verbose_name=_("product")
    )
    quantity = models.PositiveIntegerField(_("quantity"), default=1)
    unit_price_kopecks = models.PositiveBigIntegerField(_("unit price (kopecks)"))
    recipient = models.CharField(
        _("recipient"), max_length=100, help_text=_("Where the goods go: a phone number, a game account id...")
    )
    sku = models.CharField(
        _("provider SKU as sold"), max_length=100, default="", help_text=_("The product's SKU when the order was made.")
    )
    provider = models.CharField(
        _("provider"),
        max_length=50,
        blank=True,
        default="",
        help_text=_("The provider chosen when the order was made; empty (older items): the configured provider."),
    )
    max_provider_price = models.PositiveBigIntegerField(
        _("max provider price"),
        null=True,
        blank=True,
        help_text=_("The product's max provider price when the order was made; empty: no cap."),
    )
    provider_price = models.PositiveBigIntegerField(
        _("provider price"),
        null=True,
        blank=True,
        help_text=_(
            "The provider's price of one unit when the order was made (last price-list sync): what a unit is "
            "expected to take from the deposit. Empty: not known."
        ),
    )
    cost_kopecks = models.PositiveBigIntegerField(
        _("cost at sale (kopecks)"),
        null=True,
        blank=True,
        help_text=_("The supplier cost of one unit in roubles that the sale's price was made from."),
    )
    priced_rate = models.DecimalField(
        _("rate at sale"),
        max_digits=20,
        decimal_places=12,
        null=True,
        blank=True,
        help_text=_("Roubles per rupiah that the sale's price was made with."),
    )

    class Meta:
        verbose_name = _("order item")
        verbose_name_plural = _("order items")
        ordering = ["id"]
        indexes = [models.Index(fields=["recipient"], name="orderitem_recipient")]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product.name} for {self.recipient}"

    @staticmethod
    def sold_as(product: Product) -> dict:
        """The fields that fix what an item of `product` buys, as of now.

        Never sell at a loss: when the price was made from a supplier cost, the purchase may cost at
        most that cost (converted back at the rate the price was made with) plus
        PRICING_COST_TOLERANCE_PERCENT, sent to the provider as max_price; a cap staff set on the
        product is kept when it is lower."""
        cap = product.max_provider_price
        if product.cost_kopecks is not None and product.priced_rate:
            tolerance = 1 + Decimal(str(settings.PRICING_COST_TOLERANCE_PERCENT)) / 100
            priced_cost = Decimal(product.cost_kopecks) / 100 / product.priced_rate
            at_most = int((priced_cost * tolerance).to_integral_value(rounding=ROUND_CEILING))
            cap = at_most if cap is None else min(cap, at_most)
        return {
            "sku": product.sku,
            "provider": settings.FULFILLMENT_PROVIDER,
            "max_provider_price": cap,
            "provider_price": product.provider_price,
            "unit_price_kopecks": product.price_kopecks,
            "cost_kopecks": product.cost_kopecks,
            "priced_rate": product.priced_rate,
        }


class Payment(models.Model):
    """One payment at T-Bank (one PaymentId) for an order: created by Init, or first seen in a
    notification. An order normally has one; a second captured payment is a double payment."""

    order = models.ForeignKey(Order, related_name="payments", on_delete=models.PROTECT, verbose_name=_("order"))
    payment_id = models.CharField(_("T-Bank PaymentId"), max_length=64, unique=True)
    amount_kopecks = models.PositiveBigIntegerField(_("amount (kopecks)"))
    payment_url = models.URLField(_("payment link"), max_length=500, blank=True)
    bank_status = models.CharField(
        _("bank status"), max_length=40, blank=True, help_text=_("The last status the bank reported.")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(
        _("expires"), null=True, blank=True, help_text=_("RedirectDueDate sent with Init.")
    )
    captured_at = models.DateTimeField(_("captured"), null=True, blank=True, help_text=_("When CONFIRMED was applied."))
    refunded_kopecks = models.PositiveBigIntegerField(_("refunded (kopecks)"), default=0)
    last_polled_at = models.DateTimeField(
        _("last polled"), null=True, blank=True, help_text=_("When GetState was last asked.")
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        ordering = ["id"]

    def __str__(self) -> str:
        return _("Payment %(id)s (%(status)s)") % {"id": self.payment_id, "status": self.bank_status or "NEW"}


class NotificationSource(models.TextChoices):
    WEBHOOK = "webhook", _("Notification from the bank")
    POLLING = "polling", _("Learned by polling GetState")


class NotificationVerdict(models.TextChoices):
    APPLIED = "applied", _("Applied (order changed)")
    RECORDED = "recorded", _("Recorded (nothing to change)")
    DUPLICATE = "duplicate", _("Duplicate (already applied)")
    IGNORED = "ignored", _("Ignored (would downgrade the order)")
    FORBIDDEN = "forbidden", _("Forbidden (bad token or terminal)")
    MALFORMED = "malformed", _("Malformed body")
    UNKNOWN_ORDER = "unknown_order", _("Unknown OrderId")
    AMOUNT_MISMATCH = "amount_mismatch", _("Amount does not match the order")
    NEEDS_REVIEW = "needs_review", _("Needs staff review")


#: Verdicts of notifications that were turned away (answered not OK): staff's "Rejected" filter.
REJECTED_VERDICTS = frozenset(
    {
        NotificationVerdict.FORBIDDEN,
        NotificationVerdict.MALFORMED,
        NotificationVerdict.UNKNOWN_ORDER,
        NotificationVerdict.AMOUNT_MISMATCH,
    }
)


class PaymentNotification(models.Model):
    """One notification as received from T-Bank, with what we made of it.

    For an authenticated notification `raw_body` is the body as received with the Token
    replaced (it is derived from the terminal password); nothing else secret is ever in a
    notification. For a request that failed authentication (wrong source, not a notification,
    bad Token) it is only the first characters: the size and SHA-256 identify the rest.
    """

    received_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)
    order = models.ForeignKey(
        Order, null=True, blank=True, related_name="notifications", on_delete=models.SET_NULL, verbose_name=_("order")
    )
    order_ref = models.CharField(_("OrderId as sent"), max_length=100, blank=True, db_index=True)
    bank_status = models.CharField(_("bank status"), max_length=40, blank=True)
    payment_id = models.CharField(_("payment id"), max_length=64, blank=True, db_index=True)
    amount_kopecks = models.BigIntegerField(_("amount (kopecks)"), null=True, blank=True)
    verdict = models.CharField(_("verdict"), max_length=20, choices=NotificationVerdict.choices)
    http_status = models.PositiveSmallIntegerField(_("HTTP status"))
    detail = models.TextField(_("detail"), blank=True, help_text=_("What was done, or why not."))
    authenticated = models.BooleanField(
        _("authenticated"),
        default=False,
        help_text=_("Came from an allowed source with a valid TerminalKey and Token."),
    )
    raw_body = models.TextField(
        _("raw body"),
        blank=True,
        help_text=_("The body as sent, Token masked; only its beginning when not authenticated."),
    )
    body_sha256 = models.CharField(_("body SHA-256"), max_length=64, blank=True)
    body_size = models.PositiveIntegerField(_("body size (bytes)"), null=True, blank=True)
    remote_addr = models.GenericIPAddressField(_("sender address"), null=True, blank=True)
    source = models.CharField(
        _("source"), max_length=10, choices=NotificationSource.choices, default=NotificationSource.WEBHOOK
    )
    reviewed_at = models.DateTimeField(
        _("reviewed"), null=True, blank=True, help_text=_("When staff marked it reviewed.")
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.SET_NULL,
        verbose_name=_("reviewed by"),
    )

    class Meta:
        verbose_name = _("payment notification")
        verbose_name_plural = _("payment notifications")
        ordering = ["-id"]
        permissions = [("review_paymentnotification", _("Can mark payment notifications as reviewed"))]
        indexes = [
            # The admin's list filters, newest first.
            models.Index(fields=["verdict", "id"], name="notification_verdict_id"),
            models.Index(fields=["bank_status", "id"], name="notification_status_id"),
            models.Index(
                fields=["id"],
                name="notification_to_review",
                condition=Q(verdict="needs_review", reviewed_at__isnull=True),
                include=["order_id"],
            ),
            # Rare rows newest first: without these, a filter walks the newest notifications
            # until it finds a page of them (48,000 of 2 million for the rejected ones).
            models.Index(
                fields=["id"], name="notification_rejected", condition=Q(verdict__in=sorted(REJECTED_VERDICTS))
            ),
            models.Index(
                fields=["id"],
                name="notification_reviewed",
                condition=Q(verdict="needs_review", reviewed_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bank_status or '?'} for {self.order_ref or '?'} ({self.verdict})"


class IdempotencyKey(models.Model):
    """One `Idempotency-Key` of POST /api/orders from one client: the body it came with and the
    answer given.

    The unique (client, key) is what stops two concurrent requests from creating two orders; the stored
    answer is what a repeat gets back. `init_started_at` is a lease: only one request at a time
    calls Init for the key's order.
    """

    key = models.CharField(_("key"), max_length=255)
    client_scope = models.CharField(
        _("client scope"),
        max_length=64,
        blank=True,
        default="",
        help_text=_("SHA-256 of who sent the key (the client's address): a key's answer goes only to that client."),
    )
    request_hash = models.CharField(
        _("request hash"), max_length=64, help_text=_("SHA-256 of the canonical JSON body.")
    )
    order = models.ForeignKey(Order, related_name="idempotency_keys", on_delete=models.PROTECT, verbose_name=_("order"))
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True, blank=True)
    response_body = models.JSONField(_("response body"), null=True, blank=True)
    init_started_at = models.DateTimeField(_("init started at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        ordering = ["-id"]
        constraints = [
            # Scoped to the client: another client sending the same key and body never gets this
            # key's answer (it carries the order's access_token); it makes its own order.
            models.UniqueConstraint(fields=["client_scope", "key"], name="one_idempotency_key_per_client"),
        ]

    def __str__(self) -> str:
        return f"Idempotency-Key {self.key[:20]} -> order {self.order_id}"


class TBankCallOutcome(models.TextChoices):
    OK = "ok", _("Answered (success)")
    REFUSED = "refused", _("Refused by the bank")
    UNKNOWN = "unknown", _("No answer (outcome unknown)")


class TBankCall(models.Model):
    """One call we made to T-Bank (Init, CheckOrder, Cancel, GetState) about an order, for audit.

    Requests and answers are stored redacted (no Token). An Init with outcome UNKNOWN is what
    makes the next Init of that order ask CheckOrder first.
    """

    order = models.ForeignKey(Order, related_name="tbank_calls", on_delete=models.PROTECT, verbose_name=_("order"))
    method = models.CharField(_("method"), max_length=20)
    outcome = models.CharField(_("outcome"), max_length=10, choices=TBankCallOutcome.choices)
    payment_id = models.CharField(_("payment id"), max_length=64, blank=True)
    error = models.TextField(_("error"), blank=True)
    request = models.JSONField(_("request"), default=dict, blank=True)
    answer = models.JSONField(_("answer"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("T-Bank call")
        verbose_name_plural = _("T-Bank calls")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.method} for order {self.order_id}: {self.outcome}"


class EmailState(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed (gave up)")


class CustomerEmail(models.Model):
    """The outbox: one email to a customer, created in the transaction of the event it reports.

    `(order, kind, event, send_no)` is unique: the automatic email of an event is send_no 0, so
    it exists at most once whatever is retried; staff re-sends get the next numbers. `event`
    tells apart events of one kind on one order (each refund: `refund-<id>`).
    """

    order = models.ForeignKey(Order, related_name="emails", on_delete=models.PROTECT, verbose_name=_("order"))
    kind = models.CharField(_("kind"), max_length=30)
    event = models.CharField(
        _("event"), max_length=40, blank=True, default="", help_text=_("Which event of this kind, if several.")
    )
    send_no = models.PositiveIntegerField(
        _("send no"), default=0, help_text=_("0: the automatic email; 1, 2...: staff re-sends.")
    )
    to = models.EmailField(_("to address"), blank=True, help_text=_("Filled from the order when the email is sent."))
    state = models.CharField(
        _("state"), max_length=10, choices=EmailState.choices, default=EmailState.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    requested_by = models.CharField(
        _("requested by"), max_length=150, blank=True, help_text=_("Staff user who asked for a re-send.")
    )
    queued_at = models.DateTimeField(
        _("queued"), null=True, blank=True, help_text=_("When a send task was last queued.")
    )
    claimed_until = models.DateTimeField(
        _("claimed until"), null=True, blank=True, help_text=_("A worker is sending it until then.")
    )
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("customer email")
        verbose_name_plural = _("customer emails")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "kind", "event", "send_no"], name="one_customer_email_per_send"),
        ]
        permissions = [("resend_customer_email", _("Can send the codes email again"))]

    def __str__(self) -> str:
        return f"{self.kind} email #{self.send_no} for order {self.order_id} ({self.state})"


class SandboxPayment(models.Model):
    """A payment of the local T-Bank sandbox (TBANK_SANDBOX=true, development only): the state
    the sandbox answers GetState, CheckOrder and Cancel from, kept across restarts."""

    payment_id = models.CharField(_("payment id"), max_length=20, unique=True)
    order_ref = models.CharField(_("order ref"), max_length=36, db_index=True)
    amount_kopecks = models.PositiveBigIntegerField(_("amount (kopecks)"))
    status = models.CharField(_("status"), max_length=30, default="NEW")
    description = models.CharField(_("description"), max_length=140, blank=True)
    notification_url = models.CharField(_("notification url"), max_length=500, blank=True)
    success_url = models.CharField(_("success url"), max_length=500, blank=True)
    fail_url = models.CharField(_("fail url"), max_length=500, blank=True)
    refunded_kopecks = models.PositiveBigIntegerField(_("refunded (kopecks)"), default=0)
    cancel_request_ids = models.JSONField(
        _("Cancel ExternalRequestIds"), default=list, blank=True, help_text=_("Cancels already applied, by their id.")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("sandbox payment")
        verbose_name_plural = _("sandbox payments")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Sandbox payment {self.payment_id} ({self.status})"


class RefundReason(models.TextChoices):
    UNDELIVERABLE = "undeliverable", _("Units that could not be delivered")
    DOUBLE_PAYMENT = "double_payment", _("Second payment for an order already paid")
    STAFF = "staff", _("Decided by staff")
    PORTAL = "portal", _("Made in the bank's portal (recorded, not sent by us)")


class Refund(models.Model):
    """Money returned to the customer: one decision, sent to T-Bank as one Cancel.

    Created in the same transaction as the decision (with its units moved to REFUNDING), sent
    by a worker after commit; `orders.refund_state` is the only writer of `state`. Refunds made
    in the bank's portal are recorded here too (reason PORTAL, born SUCCEEDED), so that the
    books of an order add up whoever returned the money.
    """

    order = models.ForeignKey(Order, related_name="refunds", on_delete=models.PROTECT, verbose_name=_("order"))
    payment = models.ForeignKey(Payment, related_name="refunds", on_delete=models.PROTECT, verbose_name=_("payment"))
    amount_kopecks = models.PositiveBigIntegerField(_("amount (kopecks)"))
    reason = models.CharField(_("reason"), max_length=20, choices=RefundReason.choices)
    decided_by = models.CharField(_("decided by"), max_length=150, help_text=_('A staff username, or "system: <why>".'))
    decided_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.SET_NULL,
        verbose_name=_("decided by user"),
    )
    state = models.CharField(
        _("state"), max_length=20, choices=RefundState.choices, default=RefundState.DECIDED, db_index=True
    )
    external_request_id = models.CharField(
        _("ExternalRequestId"),
        max_length=64,
        unique=True,
        default=new_external_request_id,
        editable=False,
        help_text=_("Sent with every Cancel of this refund: the bank refunds once per id."),
    )
    full = models.BooleanField(
        _("full"), default=False, help_text=_("Cancel of the whole payment (no Amount, no Receipt).")
    )
    receipt = models.JSONField(_("receipt"), null=True, blank=True, help_text=_("Receipt sent with a partial Cancel."))
    claim_token = models.CharField(_("claim token"), max_length=64, blank=True)
    claim_expires_at = models.DateTimeField(_("claim expires at"), null=True, blank=True)
    next_check_at = models.DateTimeField(_("next check at"), null=True, blank=True)
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True)
    cancel_calls = models.PositiveIntegerField(
        _("cancel calls"), default=0, help_text=_("Cancels started (counted, and committed, before each call leaves).")
    )
    cancel_refusals = models.PositiveIntegerField(
        _("cancel refusals"),
        default=0,
        help_text=_("Cancels the bank answered with a refusal: nothing was refunded under them."),
    )
    cancel_may_be_at_bank = models.BooleanField(
        _("cancel may be at the bank"),
        default=False,
        help_text=_(
            "A Cancel of this refund may have reached the bank (started, and not every one refused): "
            "it is only ever repeated with the same ExternalRequestId."
        ),
    )
    state_checks = models.PositiveIntegerField(_("state checks"), default=0)
    bank_status = models.CharField(_("bank status"), max_length=40, blank=True)
    last_error_code = models.CharField(_("last error code"), max_length=20, blank=True)
    last_message = models.CharField(_("last message"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    settled_at = models.DateTimeField(_("settled"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-id"]
        permissions = [("refund_undelivered_units", _("Can refund undelivered units of paid orders"))]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_kopecks__gt=0), name="refund_amount_positive"),
            # A double payment is refunded once, however many times its CONFIRMED arrives.
            models.UniqueConstraint(
                fields=["payment"], condition=models.Q(reason="double_payment"), name="one_double_payment_refund"
            ),
            # At most one refund of a payment the bank may be making: whatever the bank then reports
            # (Cancel answer, GetState, a notification) can only be about that one. A failed refund
            # whose Cancel may have reached the bank keeps its place until staff settle it.
            models.UniqueConstraint(
                fields=["payment"],
                condition=models.Q(state__in=["sending", "checking"])
                | models.Q(state="failed", cancel_may_be_at_bank=True),
                name="one_refund_in_flight_per_payment",
            ),
        ]
        indexes = [models.Index(fields=["payment", "state"], name="refund_payment_state")]

    def __str__(self) -> str:
        return _("Refund %(id)s: %(amount)s (%(state)s)") % {
            "id": self.pk,
            "amount": money(self.amount_kopecks),
            "state": self.get_state_display(),
        }

    def save(self, *args, **kwargs) -> None:
        # Like Order.status: the state column is written only by orders.refund_state.
        if not self._state.adding:
            update_fields = kwargs.get("update_fields")
            if update_fields is None:
                update_fields = [f.attname for f in self._meta.concrete_fields if not f.primary_key]
            kwargs["update_fields"] = [name for name in update_fields if name != "state"]
        super().save(*args, **kwargs)


class RefundAttempt(models.Model):
    """One call to T-Bank for a refund (Cancel or GetState), or a notification that settled it."""

    refund = models.ForeignKey(Refund, related_name="attempts", on_delete=models.PROTECT, verbose_name=_("refund"))
    method = models.CharField(_("method"), max_length=20, help_text=_("Cancel, GetState or Notification."))
    request = models.JSONField(
        _("request"), default=dict, blank=True, help_text=_("What we sent, without Token or Password.")
    )
    answer = models.JSONField(
        _("answer"), default=dict, blank=True, help_text=_("What the bank answered, without Token.")
    )
    outcome = models.CharField(
        _("outcome"), max_length=20, help_text=_("succeeded, refused, unavailable, not_refunded...")
    )
    error_code = models.CharField(_("error code"), max_length=20, blank=True)
    message = models.CharField(_("message"), max_length=500, blank=True)
    worker = models.CharField(_("worker"), max_length=120, blank=True)
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"))
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)

    class Meta:
        verbose_name = _("refund attempt")
        verbose_name_plural = _("refund attempts")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.method} for refund {self.refund_id}: {self.outcome}"


# The pricing records live in their own module; Django finds models through this one.
from orders.pricing_models import (  # noqa: E402, F401
    Brand,
    Category,
    ExchangeRate,
    PriceChange,
    PriceChangeReason,
    PriceRounding,
    PriceRule,
    ProductSource,
    RateSource,
)
