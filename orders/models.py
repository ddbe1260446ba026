"""Products, orders, order items, payments, refunds, customer emails and the audit of bank traffic."""

from __future__ import annotations

import re
import secrets
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from orders.refund_state import RefundState
from orders.state import OrderStatus


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
    recipient_label = models.CharField(
        max_length=100,
        blank=True,
        help_text='What the customer must give as the recipient, e.g. "Phone number" or "Player ID".',
    )
    recipient_pattern = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_regex],
        help_text="Regular expression the whole recipient must match (e.g. 08[0-9]{8,11}); empty: any non-blank text.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

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
        max_length=36, unique=True, default=new_public_id, editable=False, help_text="The OrderId sent to T-Bank."
    )
    status = models.CharField(max_length=20, choices=OrderStatus.choices, default=OrderStatus.NEW, db_index=True)
    amount_kopecks = models.PositiveBigIntegerField()
    customer_email = models.EmailField(blank=True)
    access_token = models.CharField(
        max_length=64, default=new_access_token, editable=False, help_text="The customer's key to the status page."
    )
    language = models.CharField(max_length=10, blank=True, help_text="The customer's language (emails, pages).")
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
        indexes = [
            # The admin's date filter and sort; PAID orders by age for "paid for too long".
            models.Index(fields=["created_at"], name="order_created"),
            models.Index(fields=["paid_at"], name="order_paid_open", condition=Q(status="paid"), include=["id"]),
            # Refunded orders by when: the reconciliation sweep looks at the recent ones only.
            models.Index(fields=["refunded_at"], name="order_refunded_recent", condition=Q(status="refunded")),
        ]

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
        return self.public_id


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
        indexes = [models.Index(fields=["recipient"], name="orderitem_recipient")]

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


class Payment(models.Model):
    """One payment at T-Bank (one PaymentId) for an order: created by Init, or first seen in a
    notification. An order normally has one; a second captured payment is a double payment."""

    order = models.ForeignKey(Order, related_name="payments", on_delete=models.PROTECT)
    payment_id = models.CharField("T-Bank PaymentId", max_length=64, unique=True)
    amount_kopecks = models.PositiveBigIntegerField()
    payment_url = models.URLField(max_length=500, blank=True)
    bank_status = models.CharField(max_length=40, blank=True, help_text="The last status the bank reported.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="RedirectDueDate sent with Init.")
    captured_at = models.DateTimeField(null=True, blank=True, help_text="When CONFIRMED was applied.")
    refunded_kopecks = models.PositiveBigIntegerField(default=0)
    last_polled_at = models.DateTimeField(null=True, blank=True, help_text="When GetState was last asked.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Payment {self.payment_id} of order {self.order_id} ({self.bank_status or 'new'})"


class NotificationSource(models.TextChoices):
    WEBHOOK = "webhook", "Notification from the bank"
    POLLING = "polling", "Learned by polling GetState"


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
    source = models.CharField(max_length=10, choices=NotificationSource.choices, default=NotificationSource.WEBHOOK)
    reviewed_at = models.DateTimeField(null=True, blank=True, help_text="When staff marked it reviewed.")
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+", on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-id"]
        permissions = [("review_paymentnotification", "Can mark payment notifications as reviewed")]
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

    key = models.CharField(max_length=255)
    client_scope = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="SHA-256 of who sent the key (the client's address): a key's answer goes only to that client.",
    )
    request_hash = models.CharField(max_length=64, help_text="SHA-256 of the canonical JSON body.")
    order = models.ForeignKey(Order, related_name="idempotency_keys", on_delete=models.PROTECT)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    init_started_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Scoped to the client: another client sending the same key and body never gets this
            # key's answer (it carries the order's access_token); it makes its own order.
            models.UniqueConstraint(fields=["client_scope", "key"], name="one_idempotency_key_per_client"),
        ]

    def __str__(self) -> str:
        return f"Idempotency-Key {self.key[:20]} -> order {self.order_id}"


class TBankCallOutcome(models.TextChoices):
    OK = "ok", "Answered (success)"
    REFUSED = "refused", "Refused by the bank"
    UNKNOWN = "unknown", "No answer (outcome unknown)"


class TBankCall(models.Model):
    """One call we made to T-Bank (Init, CheckOrder, Cancel, GetState) about an order, for audit.

    Requests and answers are stored redacted (no Token). An Init with outcome UNKNOWN is what
    makes the next Init of that order ask CheckOrder first.
    """

    order = models.ForeignKey(Order, related_name="tbank_calls", on_delete=models.PROTECT)
    method = models.CharField(max_length=20)
    outcome = models.CharField(max_length=10, choices=TBankCallOutcome.choices)
    payment_id = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    request = models.JSONField(default=dict, blank=True)
    answer = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "T-Bank call"

    def __str__(self) -> str:
        return f"{self.method} for order {self.order_id}: {self.outcome}"


class EmailState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (gave up)"


class CustomerEmail(models.Model):
    """The outbox: one email to a customer, created in the transaction of the event it reports.

    `(order, kind, event, send_no)` is unique: the automatic email of an event is send_no 0, so
    it exists at most once whatever is retried; staff re-sends get the next numbers. `event`
    tells apart events of one kind on one order (each refund: `refund-<id>`).
    """

    order = models.ForeignKey(Order, related_name="emails", on_delete=models.PROTECT)
    kind = models.CharField(max_length=30)
    event = models.CharField(max_length=40, blank=True, default="", help_text="Which event of this kind, if several.")
    send_no = models.PositiveIntegerField(default=0, help_text="0: the automatic email; 1, 2...: staff re-sends.")
    to = models.EmailField(blank=True, help_text="Filled from the order when the email is sent.")
    state = models.CharField(max_length=10, choices=EmailState.choices, default=EmailState.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    requested_by = models.CharField(max_length=150, blank=True, help_text="Staff user who asked for a re-send.")
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When a send task was last queued.")
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="A worker is sending it until then.")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "kind", "event", "send_no"], name="one_customer_email_per_send"),
        ]
        permissions = [("resend_customer_email", "Can send the codes email again")]

    def __str__(self) -> str:
        return f"{self.kind} email #{self.send_no} for order {self.order_id} ({self.state})"


class SandboxPayment(models.Model):
    """A payment of the local T-Bank sandbox (TBANK_SANDBOX=true, development only): the state
    the sandbox answers GetState, CheckOrder and Cancel from, kept across restarts."""

    payment_id = models.CharField(max_length=20, unique=True)
    order_ref = models.CharField(max_length=36, db_index=True)
    amount_kopecks = models.PositiveBigIntegerField()
    status = models.CharField(max_length=30, default="NEW")
    description = models.CharField(max_length=140, blank=True)
    notification_url = models.CharField(max_length=500, blank=True)
    success_url = models.CharField(max_length=500, blank=True)
    fail_url = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Sandbox payment {self.payment_id} ({self.status})"


class RefundReason(models.TextChoices):
    UNDELIVERABLE = "undeliverable", "Units that could not be delivered"
    DOUBLE_PAYMENT = "double_payment", "Second payment for an order already paid"
    STAFF = "staff", "Decided by staff"
    PORTAL = "portal", "Made in the bank's portal (recorded, not sent by us)"


class Refund(models.Model):
    """Money returned to the customer: one decision, sent to T-Bank as one Cancel.

    Created in the same transaction as the decision (with its units moved to REFUNDING), sent
    by a worker after commit; `orders.refund_state` is the only writer of `state`. Refunds made
    in the bank's portal are recorded here too (reason PORTAL, born SUCCEEDED), so that the
    books of an order add up whoever returned the money.
    """

    order = models.ForeignKey(Order, related_name="refunds", on_delete=models.PROTECT)
    payment = models.ForeignKey(Payment, related_name="refunds", on_delete=models.PROTECT)
    amount_kopecks = models.PositiveBigIntegerField()
    reason = models.CharField(max_length=20, choices=RefundReason.choices)
    decided_by = models.CharField(max_length=150, help_text='A staff username, or "system: <why>".')
    decided_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+", on_delete=models.SET_NULL
    )
    state = models.CharField(max_length=20, choices=RefundState.choices, default=RefundState.DECIDED, db_index=True)
    external_request_id = models.CharField(
        "ExternalRequestId",
        max_length=64,
        unique=True,
        default=new_external_request_id,
        editable=False,
        help_text="Sent with every Cancel of this refund: the bank refunds once per id.",
    )
    full = models.BooleanField(default=False, help_text="Cancel of the whole payment (no Amount, no Receipt).")
    receipt = models.JSONField(null=True, blank=True, help_text="Receipt sent with a partial Cancel.")
    claim_token = models.CharField(max_length=64, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    cancel_calls = models.PositiveIntegerField(
        default=0, help_text="Cancels started (counted, and committed, before each call leaves)."
    )
    cancel_refusals = models.PositiveIntegerField(
        default=0, help_text="Cancels the bank answered with a refusal: nothing was refunded under them."
    )
    cancel_may_be_at_bank = models.BooleanField(
        default=False,
        help_text="A Cancel of this refund may have reached the bank (started, and not every one refused): "
        "it is only ever repeated with the same ExternalRequestId.",
    )
    state_checks = models.PositiveIntegerField(default=0)
    bank_status = models.CharField(max_length=40, blank=True)
    last_error_code = models.CharField(max_length=20, blank=True)
    last_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("refund_undelivered_units", "Can refund undelivered units of paid orders")]
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
        return f"Refund {self.pk} of order {self.order_id}: {self.amount_kopecks / 100:.2f} RUB ({self.state})"

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

    refund = models.ForeignKey(Refund, related_name="attempts", on_delete=models.PROTECT)
    method = models.CharField(max_length=20, help_text="Cancel, GetState or Notification.")
    request = models.JSONField(default=dict, blank=True, help_text="What we sent, without Token or Password.")
    answer = models.JSONField(default=dict, blank=True, help_text="What the bank answered, without Token.")
    outcome = models.CharField(max_length=20, help_text="succeeded, refused, unavailable, not_refunded...")
    error_code = models.CharField(max_length=20, blank=True)
    message = models.CharField(max_length=500, blank=True)
    worker = models.CharField(max_length=120, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.method} for refund {self.refund_id}: {self.outcome}"
