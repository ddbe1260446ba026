"""Admin for products, orders and payment notifications.

Statuses are read-only here: they change through payments, deliveries and the
"Retry fulfillment" action, never by editing a field.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils.html import format_html

from fulfillment.admin import DeliveryAttemptInline, DeliveryInline, FlagInline, ReadOnlyAdminMixin, retry_fulfillment
from fulfillment.models import Delivery, DeliveryStatus, OrderFlag
from orders.models import Order, OrderItem, PaymentNotification, Product


class ProviderAvailabilityFilter(admin.SimpleListFilter):
    title = "at provider"
    parameter_name = "at_provider"

    def lookups(self, request, model_admin):
        return [("disabled", "Disabled by provider"), ("available", "Available"), ("unknown", "Never synced")]

    def queryset(self, request, queryset):
        if self.value() == "disabled":
            return queryset.filter(provider_available=False)
        if self.value() == "available":
            return queryset.filter(provider_available=True)
        if self.value() == "unknown":
            return queryset.filter(provider_available__isnull=True)
        return queryset


class ProductForm(forms.ModelForm):
    class Meta:
        model = Product
        fields = ("name", "sku", "price_kopecks", "is_active", "max_provider_price")

    def clean(self):
        cleaned = super().clean()
        # Products created by the price-list sync start at price 0: selling them so would be free.
        if cleaned.get("is_active") and not cleaned.get("price_kopecks"):
            raise forms.ValidationError("Set a shop price (in kopecks) above 0 before activating this product.")
        return cleaned


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    list_display = (
        "name",
        "sku",
        "price_kopecks",
        "is_active",
        "provider_price",
        "provider_status",
        "provider_synced_at",
    )
    list_filter = ("is_active", ProviderAvailabilityFilter)
    search_fields = ("name", "sku")
    readonly_fields = ("provider_price", "provider_available", "provider_synced_at", "created_at", "updated_at")

    @admin.display(description="At provider", ordering="provider_available")
    def provider_status(self, obj: Product) -> str:
        if obj.provider_available is None:
            return "unknown"
        if obj.provider_available:
            return "available"
        return format_html('<strong style="color: #ba2121;">{}</strong>', "DISABLED by provider")


class OrderItemInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderItem
    fields = ("product", "quantity", "unit_price_kopecks", "recipient", "sku", "provider", "max_provider_price")
    readonly_fields = fields
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product")


class PaymentNotificationInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PaymentNotification
    fields = ("received_at", "bank_status", "payment_id", "amount_kopecks", "verdict", "http_status", "detail")
    readonly_fields = fields
    extra = 0


class NeedsReviewFilter(admin.SimpleListFilter):
    title = "staff review"
    parameter_name = "review"

    def lookups(self, request, model_admin):
        return [("open", "Flagged, open")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(Exists(OrderFlag.objects.filter(order=OuterRef("pk"), resolved_at__isnull=True)))
        return queryset


def _units_annotations() -> dict:
    units_total = (
        OrderItem.objects.filter(order=OuterRef("pk")).values("order").annotate(total=Sum("quantity")).values("total")
    )
    units_delivered = (
        Delivery.objects.filter(order=OuterRef("pk"))
        .values("order")
        .annotate(n=Count("id", filter=Q(status=DeliveryStatus.DELIVERED)))
        .values("n")
    )
    return {
        "units_total": Coalesce(Subquery(units_total, output_field=IntegerField()), 0),
        "units_delivered": Coalesce(Subquery(units_delivered, output_field=IntegerField()), 0),
    }


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "status",
        "amount_kopecks",
        "customer_email",
        "units",
        "payment_id",
        "created_at",
        "paid_at",
        "fulfilled_at",
    )
    list_filter = ("status", NeedsReviewFilter, "created_at", "paid_at", "fulfilled_at")
    search_fields = ("=id", "customer_email", "=payment_id", "=deliveries__reference", "items__recipient")
    date_hierarchy = "created_at"
    actions = [retry_fulfillment]
    inlines = [FlagInline, OrderItemInline, DeliveryInline, DeliveryAttemptInline, PaymentNotificationInline]
    readonly_fields = (
        "status",
        "amount_kopecks",
        "payment_id",
        "created_at",
        "status_changed_at",
        "paid_at",
        "fulfilled_at",
        "cancelled_at",
        "refunded_at",
        "units",
    )
    fields = (
        "status",
        "amount_kopecks",
        "customer_email",
        "payment_id",
        "units",
        "created_at",
        "status_changed_at",
        "paid_at",
        "fulfilled_at",
        "cancelled_at",
        "refunded_at",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**_units_annotations())

    def has_add_permission(self, request) -> bool:
        # Orders come from the shop front with their items and a computed amount.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_retry_fulfillment_permission(self, request) -> bool:
        return request.user.has_perm("orders.retry_fulfillment")

    @admin.display(description="Units delivered / total")
    def units(self, obj: Order) -> str:
        return f"{obj.units_delivered} / {obj.units_total}"


@admin.register(PaymentNotification)
class PaymentNotificationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("received_at", "order_ref", "bank_status", "payment_id", "amount_kopecks", "verdict", "http_status")
    list_filter = ("verdict", "bank_status", "http_status")
    search_fields = ("=order_ref", "=payment_id")
    readonly_fields = [f.name for f in PaymentNotification._meta.fields]
