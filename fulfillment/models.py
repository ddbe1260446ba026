"""Delivery state: one Delivery per unit, one DeliveryAttempt per provider call, provider halts,
and the Mock provider's ledger.

The Delivery status machine (its transitions live in fulfillment.services):

    WAITING --claim+send--> SENDING --delivered--> DELIVERED
       ^                      |  \\--pending/unknown/crash--> PENDING --check--> DELIVERED
       |                      |                                  |
       +--retryable failure (new reference, backoff)-------------+
    WAITING --refund--> CANCELLED       SENDING/PENDING --permanent failure--> FAILED
    SENDING --purchase refused for a configuration fault (provider halted)--> WAITING
    PENDING --check refused (configuration fault, rate limit)--> PENDING, same reference
    SENDING/PENDING of a refunded order --failure--> CANCELLED
    FAILED --staff retry (new reference)--> WAITING

A reference is re-used for every check of one purchase and replaced only after a final
failure of that purchase, which is what keeps a unit from being bought twice.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class DeliveryStatus(models.TextChoices):
    WAITING = "waiting", "Waiting to be sent"
    SENDING = "sending", "Sent, no answer yet"
    PENDING = "pending", "Pending at provider"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (needs staff)"
    CANCELLED = "cancelled", "Cancelled (refunded before sending)"


OPEN_STATUSES = (DeliveryStatus.WAITING, DeliveryStatus.SENDING, DeliveryStatus.PENDING)


class Delivery(models.Model):
    # No index of its own: delivery_order_status (order, status) serves every look-up by order.
    order = models.ForeignKey("orders.Order", related_name="deliveries", on_delete=models.PROTECT, db_index=False)
    item = models.ForeignKey("orders.OrderItem", related_name="deliveries", on_delete=models.PROTECT)
    unit_index = models.PositiveIntegerField(help_text="0-based index of this unit within its item.")
    unit_key = models.CharField(max_length=64, unique=True, editable=False)
    reference = models.CharField(
        max_length=40, unique=True, help_text="The reference of the current purchase at the provider."
    )
    purchase_no = models.PositiveIntegerField(default=1, help_text="How many references this unit has had.")
    provider = models.CharField(max_length=50, blank=True, help_text="Provider holding the current reference.")
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.WAITING)
    purchase_attempts = models.PositiveIntegerField(default=0)
    status_checks = models.PositiveIntegerField(default=0)
    serial = models.CharField(max_length=255, blank=True)
    last_code = models.CharField(max_length=50, blank=True)
    last_message = models.CharField(max_length=500, blank=True)
    failure_scope = models.CharField(max_length=20, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    reference_sent_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When a task was queued for it.")
    claim_token = models.CharField(max_length=64, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order_id", "item_id", "unit_index"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["item", "unit_index"], name="one_delivery_per_unit"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_open_due",
                condition=Q(status__in=["waiting", "sending", "pending"]),
            ),
            models.Index(fields=["order", "status"], name="delivery_order_status"),
        ]

    def __str__(self) -> str:
        return f"Unit {self.unit_key} ({self.status})"


class AttemptKind(models.TextChoices):
    PURCHASE = "purchase", "Purchase"
    CHECK = "check", "Status check"
    CALLBACK = "callback", "Provider callback"


class DeliveryAttempt(models.Model):
    """One call to a provider (or one callback from it), kept for audit."""

    delivery = models.ForeignKey(Delivery, related_name="attempts", on_delete=models.PROTECT)
    order = models.ForeignKey("orders.Order", related_name="delivery_attempts", on_delete=models.PROTECT)
    provider = models.CharField(max_length=50)
    reference = models.CharField(max_length=40, db_index=True)
    kind = models.CharField(max_length=20, choices=AttemptKind.choices)
    outcome = models.CharField(max_length=20)
    failure_scope = models.CharField(max_length=20, blank=True)
    code = models.CharField(max_length=50, blank=True)
    message = models.CharField(max_length=500, blank=True)
    serial = models.CharField(max_length=255, blank=True)
    raw = models.JSONField(default=dict, blank=True)
    worker = models.CharField(max_length=120, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.reference}: {self.outcome}"


class ProviderHalt(models.Model):
    """A provider stopped for the whole shop by a configuration fault; staff delete it once fixed."""

    provider = models.CharField(max_length=50, unique=True)
    code = models.CharField(max_length=50, blank=True)
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.provider} halted: {self.reason}"


class MockLedgerEntry(models.Model):
    """What the Mock provider 'sold': one row per reference, so repeats return the same answer
    across process restarts and tests can count real deliveries per unit."""

    reference = models.CharField(max_length=40, unique=True)
    unit_key = models.CharField(max_length=64, db_index=True)
    sku = models.CharField(max_length=100)
    recipient = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20)
    serial = models.CharField(max_length=64, blank=True)
    calls = models.PositiveIntegerField(default=1)
    resolve_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "mock ledger entries"

    def __str__(self) -> str:
        return f"{self.reference}: {self.outcome}"


class ProviderAccount(models.Model):
    """What the operator tools last learned about the shop's account at a provider: the deposit
    balance, and when the whole price list was last requested (providers rate-limit it)."""

    provider = models.CharField(max_length=50, unique=True)
    balance = models.BigIntegerField(
        null=True, blank=True, help_text="Deposit at the provider, in its currency (IDR for Digiflazz)."
    )
    balance_checked_at = models.DateTimeField(null=True, blank=True)
    price_list_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="Last request of the whole price list, answered or not."
    )
    price_list_summary = models.CharField(max_length=500, blank=True, help_text="What the last price-list sync did.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.provider} account"
