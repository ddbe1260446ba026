"""Admin for deliveries, attempts and provider halts, plus the pieces the order admin borrows:
the delivery inlines and the "Retry fulfillment" action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from fulfillment.models import Delivery, DeliveryAttempt, MockLedgerEntry, ProviderAccount, ProviderHalt
from fulfillment.services import OrderNotFound, OrderNotFulfillable, order_fulfillment_retry, provider_resume


class ReadOnlyAdminMixin:
    """Audit records: visible, never edited or deleted from the admin."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class DeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Delivery
    fields = (
        "unit_key",
        "status",
        "reference",
        "provider",
        "purchase_no",
        "purchase_attempts",
        "serial",
        "last_code",
        "last_message",
        "next_attempt_at",
        "delivered_at",
    )
    readonly_fields = fields
    extra = 0
    show_change_link = True


class DeliveryAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = DeliveryAttempt
    fields = (
        "started_at",
        "kind",
        "provider",
        "reference",
        "outcome",
        "failure_scope",
        "code",
        "message",
        "serial",
        "duration_ms",
        "worker",
    )
    readonly_fields = fields
    extra = 0


@admin.action(description="Retry fulfillment of selected paid orders", permissions=["retry_fulfillment"])
def retry_fulfillment(modeladmin, request, queryset) -> None:
    queued, skipped = [], []
    for order_id in queryset.values_list("pk", flat=True):
        try:
            decision = order_fulfillment_retry(order_id=order_id)
        except (OrderNotFound, OrderNotFulfillable) as exc:
            skipped.append(f"#{order_id}: {exc}")
            continue
        if decision.queued:
            queued.append(order_id)
        else:
            skipped.append(f"#{order_id}: {decision.reason}")
        if decision.held_unknown:
            modeladmin.message_user(request, decision.held_reason, messages.WARNING)
    if queued:
        modeladmin.message_user(
            request,
            f"Queued {len(queued)} order(s) for delivery: " + ", ".join(f"#{pk}" for pk in queued) + ".",
            messages.SUCCESS,
        )
    if skipped:
        modeladmin.message_user(request, f"Skipped {len(skipped)} order(s): " + "; ".join(skipped), messages.WARNING)
    halts = list(ProviderHalt.objects.all())
    for halt in halts:
        modeladmin.message_user(
            request,
            f"Deliveries through {halt.provider} are halted: {halt.reason} Queued orders wait until "
            "the halt is removed (Fulfillment > Provider halts).",
            messages.ERROR,
        )


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "unit_key",
        "order_id",
        "status",
        "provider",
        "reference",
        "purchase_attempts",
        "last_code",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "provider")
    search_fields = ("=reference", "unit_key", "=order__id", "item__recipient")
    list_select_related = ("order",)
    inlines = [DeliveryAttemptInline]
    readonly_fields = [f.name for f in Delivery._meta.fields]


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("started_at", "order_id", "kind", "provider", "reference", "outcome", "code", "duration_ms")
    list_filter = ("kind", "outcome", "provider")
    search_fields = ("=reference", "=order__id")
    readonly_fields = [f.name for f in DeliveryAttempt._meta.fields]


@admin.register(ProviderHalt)
class ProviderHaltAdmin(admin.ModelAdmin):
    """A halt is removed (deleted) by staff once the configuration fault is fixed."""

    list_display = ("provider", "code", "reason_text", "created_at")
    readonly_fields = ("provider", "code", "reason", "created_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj: ProviderHalt) -> None:
        provider_resume(provider=obj.provider)

    def delete_queryset(self, request, queryset) -> None:
        for provider in queryset.values_list("provider", flat=True):
            provider_resume(provider=provider)

    @admin.display(description="What to fix")
    def reason_text(self, obj: ProviderHalt) -> str:
        return format_html("<strong>{}</strong>", obj.reason)


@admin.register(MockLedgerEntry)
class MockLedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("reference", "unit_key", "sku", "recipient", "outcome", "serial", "calls", "created_at")
    list_filter = ("outcome",)
    search_fields = ("=reference", "unit_key", "recipient")


@admin.register(ProviderAccount)
class ProviderAccountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Filled by `manage.py digiflazz_balance` and `manage.py sync_digiflazz_products`."""

    list_display = ("provider", "deposit", "balance_checked_at", "price_list_requested_at", "price_list_summary")
    readonly_fields = [f.name for f in ProviderAccount._meta.fields]

    @admin.display(description="Last known deposit", ordering="balance")
    def deposit(self, obj: ProviderAccount) -> str:
        return "unknown" if obj.balance is None else f"{obj.balance:,}"
