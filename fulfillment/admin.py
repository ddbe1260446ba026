"""Admin for deliveries, attempts, provider halts, product pauses, order flags and provider
accounts, plus the pieces the order admin borrows: the delivery and flag inlines and the
"Retry fulfillment" action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from fulfillment.models import (
    Delivery,
    DeliveryAttempt,
    MockLedgerEntry,
    OrderFlag,
    ProductPause,
    ProviderAccount,
    ProviderHalt,
)
from fulfillment.services import (
    OrderNotFound,
    OrderNotFulfillable,
    order_flag_resolve,
    order_fulfillment_retry,
    product_resume,
    provider_resume,
)


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


class FlagInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderFlag
    fields = ("created_at", "kind", "reason", "delivery", "attempt", "resolved_at", "resolved_by")
    readonly_fields = fields
    extra = 0


class FaultAdmin(admin.ModelAdmin):
    """Halts and pauses lift by themselves once the fault is shown to be gone; staff may lift one
    sooner by deleting it (the held units are due at once)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="What happened, what to fix")
    def reason_text(self, obj) -> str:
        return format_html("<strong>{}</strong>", obj.reason)


@admin.register(ProviderHalt)
class ProviderHaltAdmin(FaultAdmin):
    list_display = ("provider", "scope", "code", "reason_text", "created_at", "next_probe_at", "clears_at", "checked")
    readonly_fields = [f.name for f in ProviderHalt._meta.fields]

    def delete_model(self, request, obj: ProviderHalt) -> None:
        provider_resume(provider=obj.provider, reason=f"lifted by {request.user.get_username()}")

    def delete_queryset(self, request, queryset) -> None:
        for provider in queryset.values_list("provider", flat=True):
            provider_resume(provider=provider, reason=f"lifted by {request.user.get_username()}")

    @admin.display(description="Last account check")
    def checked(self, obj: ProviderHalt) -> str:
        return f"{obj.checked_at:%Y-%m-%d %H:%M:%S}: {obj.check_result}" if obj.checked_at else "not yet"


@admin.register(ProductPause)
class ProductPauseAdmin(FaultAdmin):
    list_display = ("sku", "provider", "product", "code", "reason_text", "created_at", "next_probe_at", "probes")
    list_filter = ("provider",)
    search_fields = ("sku",)
    readonly_fields = [f.name for f in ProductPause._meta.fields]

    def delete_model(self, request, obj: ProductPause) -> None:
        product_resume(provider=obj.provider, sku=obj.sku, reason=f"lifted by {request.user.get_username()}")

    def delete_queryset(self, request, queryset) -> None:
        for provider, sku in queryset.values_list("provider", "sku"):
            product_resume(provider=provider, sku=sku, reason=f"lifted by {request.user.get_username()}")


class OpenFlagFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.action(description="Mark selected flags resolved")
def resolve_flags(modeladmin, request, queryset) -> None:
    done = sum(
        order_flag_resolve(flag_id=pk, resolved_by=request.user.get_username())
        for pk in queryset.values_list("pk", flat=True)
    )
    modeladmin.message_user(request, f"Resolved {done} flag(s).", messages.SUCCESS)


@admin.register(OrderFlag)
class OrderFlagAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Orders staff must look at. Resolve a flag once dealt with; it stays on record."""

    list_display = ("created_at", "order_id", "kind", "reason", "resolved_at", "resolved_by")
    list_filter = (OpenFlagFilter, "kind")
    search_fields = ("=order__id",)
    actions = [resolve_flags]
    readonly_fields = [f.name for f in OrderFlag._meta.fields]

    def has_change_permission(self, request, obj=None) -> bool:
        # Needed for the action; the form itself shows read-only fields only.
        return request.user.has_perm("fulfillment.change_orderflag")


@admin.register(MockLedgerEntry)
class MockLedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("reference", "unit_key", "sku", "recipient", "outcome", "serial", "calls", "created_at")
    list_filter = ("outcome",)
    search_fields = ("=reference", "unit_key", "recipient")


@admin.register(ProviderAccount)
class ProviderAccountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Filled by the periodic account check, `manage.py digiflazz_balance` and `manage.py sync_digiflazz_products`."""

    list_display = (
        "provider",
        "deposit",
        "balance_checked_at",
        "checked_at",
        "check_ok",
        "check_message",
        "price_list_requested_at",
        "price_list_summary",
    )
    readonly_fields = [f.name for f in ProviderAccount._meta.fields]

    @admin.display(description="Last known deposit", ordering="balance")
    def deposit(self, obj: ProviderAccount) -> str:
        return "unknown" if obj.balance is None else f"{obj.balance:,}"
