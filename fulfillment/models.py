"""Delivery state: one Delivery per unit, one DeliveryAttempt per provider call or callback,
the faults that hold deliveries back (ProviderHalt for the whole shop, ProductPause for one
product), flags for staff (OrderFlag), the provider account, and the Mock provider's ledger.

The Delivery status machine (its transitions live in fulfillment.services):

    WAITING --claim+send--> SENDING --delivered--> DELIVERED
       ^                      |  \\--pending/unknown/crash--> PENDING --check--> DELIVERED
       |                      |                                  |
       +--retryable failure (new reference, backoff)-------------+
       +--product or shop fault (new reference; pause or halt; no attempt used)--+
    WAITING --refund--> CANCELLED       SENDING/PENDING --permanent failure--> FAILED
    PENDING --check refused (credentials, rate limit, request error)--> PENDING, same reference
    SENDING/PENDING of a refunded order --failure--> CANCELLED
    FAILED --staff retry (new reference)--> WAITING
    FAILED by a product or shop fault (older data) --fault no longer active--> WAITING
    WAITING on a halted provider or paused product: postponed, sent again once it is lifted
    WAITING on a deposit halt: released (released_at) once the deposit seen covers it, oldest first
    FAILED --refund decided (same transaction as the Refund)--> REFUNDING --refund succeeded--> REFUNDED

A unit leaves FAILED by one conditional UPDATE (`WHERE status = 'failed'`), whether to WAITING
(a staff retry) or to REFUNDING (a refund decision), so a refunded unit is never delivered
and a unit being retried is never refunded. Only FAILED units are ever refunded by us, so a
delivered unit never is; a refund made in the bank's portal links the units it covers
(`refund`) whatever their status.

A reference is re-used for every check of one purchase and replaced only after a final
failure of that purchase, which is what keeps a unit from being bought twice.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class DeliveryStatus(models.TextChoices):
    WAITING = "waiting", _("Waiting to be sent")
    SENDING = "sending", _("Sent, no answer yet")
    PENDING = "pending", _("Pending at provider")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed (needs staff)")
    CANCELLED = "cancelled", _("Cancelled (refunded before sending)")
    REFUNDING = "refunding", _("Refund decided (never delivered)")
    REFUNDED = "refunded", _("Refunded")


OPEN_STATUSES = (DeliveryStatus.WAITING, DeliveryStatus.SENDING, DeliveryStatus.PENDING)
#: Units whose money goes (or went) back to the customer.
REFUND_STATUSES = (DeliveryStatus.REFUNDING, DeliveryStatus.REFUNDED)


class Delivery(models.Model):
    # No index of its own: delivery_order_status (order, status) serves every look-up by order.
    order = models.ForeignKey(
        "orders.Order", related_name="deliveries", on_delete=models.PROTECT, db_index=False, verbose_name=_("order")
    )
    item = models.ForeignKey(
        "orders.OrderItem", related_name="deliveries", on_delete=models.PROTECT, verbose_name=_("item")
    )
    unit_index = models.PositiveIntegerField(
        _("unit index"), help_text=_("0-based index of this unit within its item.")
    )
    unit_key = models.CharField(_("unit key"), max_length=64, unique=True, editable=False)
    reference = models.CharField(
        _("reference"),
        max_length=40,
        unique=True,
        help_text=_("The reference of the current purchase at the provider."),
    )
    purchase_no = models.PositiveIntegerField(
        _("purchase no"), default=1, help_text=_("How many references this unit has had.")
    )
    provider = models.CharField(
        _("provider"), max_length=50, blank=True, help_text=_("Provider holding the current reference.")
    )
    sku = models.CharField(
        _("supplier SKU"),
        max_length=100,
        blank=True,
        help_text=_(
            "The supplier SKU of the current purchase, when routing moved it off the item's (a backup SKU of the "
            "product); empty: the item's SKU."
        ),
    )
    max_price_override = models.PositiveBigIntegerField(
        _("max price agreed by staff"),
        null=True,
        blank=True,
        help_text=_(
            "Staff agreed to buy this unit at up to this supplier price (after a price rise); empty: the item's "
            "max provider price."
        ),
    )
    cost = models.PositiveBigIntegerField(
        _("supplier cost"),
        null=True,
        blank=True,
        help_text=_("What the delivered purchase cost at the supplier, in its currency, when its answer said."),
    )
    status = models.CharField(
        _("status"), max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.WAITING
    )
    purchase_attempts = models.PositiveIntegerField(_("purchase attempts"), default=0)
    status_checks = models.PositiveIntegerField(_("status checks"), default=0)
    serial = models.CharField(_("code"), max_length=255, blank=True)
    last_code = models.CharField(_("last code"), max_length=50, blank=True)
    last_message = models.CharField(_("last message"), max_length=500, blank=True)
    failure_scope = models.CharField(_("failure scope"), max_length=20, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    reference_sent_at = models.DateTimeField(_("reference sent at"), null=True, blank=True)
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True, help_text=_("When a task was queued for it."))
    claim_token = models.CharField(_("claim token"), max_length=64, blank=True)
    claim_expires_at = models.DateTimeField(_("claim expires at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    released_at = models.DateTimeField(
        _("released at"),
        null=True,
        blank=True,
        help_text=_(
            "Let through a deposit halt of its provider at this time: the deposit seen covers it. Cleared when "
            "it goes back to waiting or the halt ends."
        ),
    )
    refund = models.ForeignKey(
        "orders.Refund",
        null=True,
        blank=True,
        related_name="units",
        on_delete=models.PROTECT,
        help_text=_("The refund that returns this unit's price; set once, never changed."),
        verbose_name=_("refund"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        ordering = ["order_id", "item_id", "unit_index"]
        # Spending more than the sale was priced at is a decision of its own, apart from retrying.
        permissions = [("buy_at_new_price", _("Can buy held units at the supplier's new price"))]
        constraints = [
            models.UniqueConstraint(fields=["item", "unit_index"], name="one_delivery_per_unit"),
            # A unit we refund is one that was never delivered: REFUNDING/REFUNDED need a refund.
            models.CheckConstraint(
                condition=~Q(status__in=["refunding", "refunded"]) | Q(refund__isnull=False),
                name="refunded_unit_has_refund",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_open_due",
                condition=Q(status__in=["waiting", "sending", "pending"]),
            ),
            models.Index(fields=["order", "status"], name="delivery_order_status"),
            # The admin's list filters, newest first; failed units for the staff dashboard.
            # order_id included: the orders behind failed units are read from the index alone.
            models.Index(fields=["status", "id"], name="delivery_status_id", include=["order_id"]),
            models.Index(fields=["provider", "id"], name="delivery_provider_id"),
            # The margin report: delivered units by the day they were delivered.
            models.Index(fields=["delivered_at"], name="delivery_delivered_at", condition=Q(status="delivered")),
            # Tiny (normally empty): units failed by a fault that was not theirs, resumed once it clears.
            # The scopes are providers.base.NOT_THE_UNITS_SCOPES (records sit below the providers
            # layer, so they are spelled out; a test keeps the two alike): the sweep's query names
            # them all, and PostgreSQL uses a partial index only when its condition covers the query's.
            models.Index(
                fields=["provider"],
                name="delivery_failed_by_fault",
                condition=Q(status="failed", failure_scope__in=["configuration", "price", "product", "shop"]),
            ),
        ]

    def __str__(self) -> str:
        return f"Unit {self.unit_key} ({self.status})"


def units_of_sku(sku: str) -> Q:
    """A filter on units: those whose current purchase is of `sku` (routed to it, or their item's)."""
    return Q(sku=sku) | Q(sku="", item__sku=sku)


def units_through(provider: str) -> Q:
    """A filter on units: those whose purchases go through `provider` (their own, or their item's)."""
    through = Q(provider=provider) | Q(provider="", item__provider=provider)
    if provider == settings.FULFILLMENT_PROVIDER:
        through |= Q(provider="", item__provider="")
    return through


class AttemptKind(models.TextChoices):
    PURCHASE = "purchase", _("Purchase")
    CHECK = "check", _("Status check")
    CALLBACK = "callback", _("Provider callback")


class DeliveryAttempt(models.Model):
    """One call to a provider (or one callback from it), kept for audit."""

    delivery = models.ForeignKey(
        Delivery, related_name="attempts", on_delete=models.PROTECT, verbose_name=_("delivery")
    )
    order = models.ForeignKey(
        "orders.Order", related_name="delivery_attempts", on_delete=models.PROTECT, verbose_name=_("order")
    )
    provider = models.CharField(_("provider"), max_length=50)
    reference = models.CharField(_("reference"), max_length=40, db_index=True)
    sku = models.CharField(_("supplier SKU"), max_length=100, blank=True)
    price = models.BigIntegerField(
        _("supplier price"), null=True, blank=True, help_text=_("The price the provider's answer gave, if any.")
    )
    kind = models.CharField(_("kind"), max_length=20, choices=AttemptKind.choices)
    outcome = models.CharField(_("outcome"), max_length=20)
    failure_scope = models.CharField(_("failure scope"), max_length=20, blank=True)
    code = models.CharField(_("code"), max_length=50, blank=True)
    message = models.CharField(_("message"), max_length=500, blank=True)
    serial = models.CharField(_("code"), max_length=255, blank=True)
    raw = models.JSONField(_("provider answer"), default=dict, blank=True)
    worker = models.CharField(_("worker"), max_length=120, blank=True)
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"))
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["id"]
        indexes = [
            # The admin's list filters, newest first.
            models.Index(fields=["outcome", "id"], name="attempt_outcome_id"),
            models.Index(fields=["provider", "id"], name="attempt_provider_id"),
            models.Index(fields=["kind", "id"], name="attempt_kind_id"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.reference}: {self.outcome}"


class ProviderHalt(models.Model):
    """Deliveries through a provider stopped for the whole shop: a SHOP fault (deposit used up,
    rate limit) or a CONFIGURATION one (credentials, IP allow-list). One row per halted provider;
    the row is deleted when the halt is lifted: by the periodic account check once it shows the
    fault gone, by a probe purchase that meets no such fault, when `clears_at` passes, or by staff."""

    provider = models.CharField(_("provider"), max_length=50, unique=True)
    scope = models.CharField(_("scope"), max_length=20, default="configuration", help_text=_("shop or configuration."))
    code = models.CharField(_("code"), max_length=50, blank=True)
    reason = models.TextField(_("reason"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True, help_text=_("Halted since."))
    last_seen_at = models.DateTimeField(
        _("last seen at"), null=True, blank=True, help_text=_("Last answer with this fault.")
    )
    probes = models.PositiveIntegerField(
        _("probes"), default=0, help_text=_("Probe purchases that met the fault again.")
    )
    next_probe_at = models.DateTimeField(
        _("next probe at"), null=True, blank=True, help_text=_("When one purchase may test the provider.")
    )
    clears_at = models.DateTimeField(
        _("clears at"),
        null=True,
        blank=True,
        help_text=_("Lifted at this time by itself: the provider asked to wait until then."),
    )
    checked_at = models.DateTimeField(
        _("checked at"), null=True, blank=True, help_text=_("Last account check while halted.")
    )
    check_result = models.CharField(
        _("check result"), max_length=500, blank=True, help_text=_("What that check found.")
    )
    lowest_balance = models.BigIntegerField(
        _("lowest balance"),
        null=True,
        blank=True,
        help_text=_("Lowest deposit seen while halted: a higher one means a top-up."),
    )

    class Meta:
        verbose_name = _("provider halt")
        verbose_name_plural = _("provider halts")

    def __str__(self) -> str:
        return f"{self.provider} halted: {self.reason}"


class PauseKind(models.TextChoices):
    FAULT = "fault", _("Product fault")
    REPRICING = "repricing", _("Repricing")


class ProductPause(models.Model):
    """Deliveries of one SKU through one provider stopped by a PRODUCT fault (out of stock, no
    seller, seller disrupted). Units of other products go on. Deleted when lifted: by a probe
    purchase of that SKU that meets no product fault, when `clears_at` passes, or by staff.

    A REPRICING pause (the supplier refused a purchase for price) has no probes. Until the next
    price-list sync (`price` empty) it holds every purchase of the SKU and the product is not sold.
    Once a sync has priced the product again, `price` is the supplier's new price: units whose
    max price covers it go (new orders, sold at the new cost), the others wait for staff to buy
    them at the new price or refund them; the pause is deleted when it holds no unit any more."""

    provider = models.CharField(_("provider"), max_length=50)
    sku = models.CharField(_("sku"), max_length=100)
    kind = models.CharField(_("kind"), max_length=20, choices=PauseKind.choices, default=PauseKind.FAULT)
    price = models.PositiveBigIntegerField(
        _("new supplier price"),
        null=True,
        blank=True,
        help_text=_("Repricing: the supplier's price at the sync that repriced the product; empty: not repriced yet."),
    )
    repriced_at = models.DateTimeField(_("repriced"), null=True, blank=True)
    product = models.ForeignKey(
        "orders.Product",
        null=True,
        blank=True,
        related_name="pauses",
        on_delete=models.SET_NULL,
        verbose_name=_("product"),
    )
    code = models.CharField(_("code"), max_length=50, blank=True)
    reason = models.TextField(_("reason"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True, help_text=_("Paused since."))
    last_seen_at = models.DateTimeField(
        _("last seen at"), null=True, blank=True, help_text=_("Last answer with this fault.")
    )
    probes = models.PositiveIntegerField(
        _("probes"), default=0, help_text=_("Probe purchases that met the fault again.")
    )
    next_probe_at = models.DateTimeField(
        _("next probe at"), null=True, blank=True, help_text=_("When one purchase may test the product.")
    )
    clears_at = models.DateTimeField(
        _("clears at"),
        null=True,
        blank=True,
        help_text=_("Lifted at this time by itself: the provider asked to wait until then."),
    )

    class Meta:
        verbose_name = _("product pause")
        verbose_name_plural = _("product pauses")
        constraints = [models.UniqueConstraint(fields=["provider", "sku"], name="one_pause_per_product")]

    def __str__(self) -> str:
        return f"{self.sku} at {self.provider} paused: {self.reason}"


class FlagKind(models.TextChoices):
    CALLBACK_CONTRADICTS = "callback_contradicts", _("A provider callback contradicts the unit's recorded outcome")
    NOTHING_TO_DELIVER = "nothing_to_deliver", _("Paid, but the order has nothing to deliver")
    GOODS_AND_MONEY = "goods_and_money", _("Goods and money both given: delivered after its refund")
    PORTAL_REFUND = "portal_refund", _("A refund made in the bank's portal matches no undelivered units")
    LEDGER = "ledger", _("The order's money does not add up (delivered + refunds would exceed paid)")


#: Flags that stop every automatic purchase and refund of the order until staff resolve them.
BLOCKING_FLAG_KINDS = (FlagKind.PORTAL_REFUND, FlagKind.LEDGER)


class OrderFlag(models.Model):
    """Something about an order that a person must look at. Open while `resolved_at` is empty:
    `OrderFlag.objects.filter(resolved_at__isnull=True)` is what staff have to review."""

    order = models.ForeignKey("orders.Order", related_name="flags", on_delete=models.PROTECT, verbose_name=_("order"))
    delivery = models.ForeignKey(
        Delivery, null=True, blank=True, related_name="flags", on_delete=models.PROTECT, verbose_name=_("delivery")
    )
    attempt = models.ForeignKey(
        DeliveryAttempt,
        null=True,
        blank=True,
        related_name="flags",
        on_delete=models.PROTECT,
        help_text=_("The recorded provider answer that raised the flag."),
        verbose_name=_("attempt"),
    )
    kind = models.CharField(_("kind"), max_length=30, choices=FlagKind.choices)
    reason = models.TextField(_("reason"), help_text=_("What was found and what to check."))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolved_by = models.CharField(_("resolved by"), max_length=150, blank=True)

    class Meta:
        verbose_name = _("order flag")
        verbose_name_plural = _("order flags")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["created_at"], name="orderflag_open", condition=Q(resolved_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"Order {self.order_id}: {self.get_kind_display()}"


class MockLedgerEntry(models.Model):
    """What the Mock provider 'sold': one row per reference, so repeats return the same answer
    across process restarts and tests can count real deliveries per unit."""

    reference = models.CharField(_("reference"), max_length=40, unique=True)
    unit_key = models.CharField(_("unit key"), max_length=64, db_index=True)
    sku = models.CharField(_("sku"), max_length=100)
    recipient = models.CharField(_("recipient"), max_length=100)
    outcome = models.CharField(_("outcome"), max_length=20)
    serial = models.CharField(_("code"), max_length=64, blank=True)
    calls = models.PositiveIntegerField(_("calls"), default=1)
    resolve_at = models.DateTimeField(_("resolve at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("mock ledger entry")
        verbose_name_plural = _("mock ledger entries")

    def __str__(self) -> str:
        return f"{self.reference}: {self.outcome}"


class ProviderAccount(models.Model):
    """What the shop last learned about its account at a provider: the deposit balance (refreshed
    by the periodic account check and the operator tools), the last check's verdict, and when the
    whole price list was last requested (providers rate-limit it)."""

    provider = models.CharField(_("provider"), max_length=50, unique=True)
    balance = models.BigIntegerField(
        _("balance"),
        null=True,
        blank=True,
        help_text=_("Deposit at the provider, in its currency (IDR for Digiflazz)."),
    )
    balance_checked_at = models.DateTimeField(_("balance checked at"), null=True, blank=True)
    price_list_requested_at = models.DateTimeField(
        _("price list requested at"),
        null=True,
        blank=True,
        help_text=_("Last request of the whole price list, answered or not."),
    )
    price_list_summary = models.CharField(
        _("price list summary"), max_length=500, blank=True, help_text=_("What the last price-list sync did.")
    )
    checked_at = models.DateTimeField(
        _("checked at"), null=True, blank=True, help_text=_("Last periodic account check.")
    )
    check_ok = models.BooleanField(
        _("check ok"), null=True, blank=True, help_text=_("Whether that check was answered normally.")
    )
    check_message = models.CharField(
        _("check message"), max_length=500, blank=True, help_text=_("What that check found.")
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("provider account")
        verbose_name_plural = _("provider accounts")

    def __str__(self) -> str:
        return f"{self.provider} account"


# The supplier's catalogue lives in its own module; Django finds models through this one.
from fulfillment.supplier_catalog import SupplierSku  # noqa: E402, F401
