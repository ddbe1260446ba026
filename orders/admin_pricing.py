"""Staff's side of pricing: price rules, exchange rates, the record of price changes, categories
and brands (orders.services.pricing makes the prices)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from fulfillment_site.console.formatting import rubles, rubles_html
from orders.models import Brand, Category, ExchangeRate, PriceChange, PriceChangeReason, PriceRule
from orders.services.pricing import exchange_rate_in_use, products_reprice


def _reprice_all(request, *, reason: str) -> None:
    report = products_reprice(reason=reason, changed_by=request.user)
    level = messages.WARNING if report.problem else messages.SUCCESS
    messages.add_message(
        request,
        level,
        report.problem
        or _("Prices recalculated: %(checked)d products checked, %(changed)d prices changed.")
        % {"checked": report.checked, "changed": report.changed},
    )


@admin.register(PriceRule)
class PriceRuleAdmin(admin.ModelAdmin):
    list_display = ("rule_scope", "markup_percent", "fixed", "min_margin", "rounding", "is_active", "updated_at")
    list_filter = ("is_active", "rounding")
    autocomplete_fields = ("product",)
    fields = (
        "product",
        "brand",
        "category",
        "markup_percent",
        "fixed_kopecks",
        "min_margin_kopecks",
        "rounding",
        "is_active",
    )

    @admin.display(description=_("applies to"))
    def rule_scope(self, obj: PriceRule) -> str:
        return obj.scope

    @admin.display(description=_("fixed addition"), ordering="fixed_kopecks")
    def fixed(self, obj: PriceRule) -> str:
        return rubles(obj.fixed_kopecks)

    @admin.display(description=_("minimum margin"), ordering="min_margin_kopecks")
    def min_margin(self, obj: PriceRule) -> str:
        return rubles(obj.min_margin_kopecks)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product", "brand", "category")

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        _reprice_all(request, reason=PriceChangeReason.RULE)

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        _reprice_all(request, reason=PriceChangeReason.RULE)


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    list_display = ("date", "currency", "rub_per_unit", "per_10000", "source", "fetched_at")
    list_filter = ("source", "currency")
    readonly_fields = ("currency", "date", "rub_per_unit", "source", "fetched_at")

    @admin.display(description=_("roubles per 10,000"))
    def per_10000(self, obj: ExchangeRate) -> str:
        return f"{obj.rub_per_unit * 10000:.4f}"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        rate = exchange_rate_in_use()
        if rate.problem:
            self.message_user(request, rate.problem, messages.WARNING)
        elif rate.rub_per_unit is not None:
            self.message_user(
                request,
                _("Prices are made with %(rate)s roubles per rupiah (%(source)s).")
                % {"rate": rate.rub_per_unit, "source": rate.source},
                messages.INFO,
            )
        return super().changelist_view(request, extra_context)


@admin.register(PriceChange)
class PriceChangeAdmin(admin.ModelAdmin):
    list_display = ("created_at", "product", "old_price", "new_price", "cost_text", "rate", "reason", "applied_by")
    list_filter = ("reason",)
    list_select_related = ("product", "changed_by")
    search_fields = ("product__sku",)
    show_full_result_count = False

    @admin.display(description=_("old price"), ordering="old_price_kopecks")
    def old_price(self, obj: PriceChange):
        return rubles_html(obj.old_price_kopecks)

    @admin.display(description=_("new price"), ordering="new_price_kopecks")
    def new_price(self, obj: PriceChange):
        return rubles_html(obj.new_price_kopecks)

    @admin.display(description=_("cost"))
    def cost_text(self, obj: PriceChange) -> str:
        return rubles(obj.cost_kopecks) if obj.cost_kopecks is not None else "—"

    @admin.display(description=_("by"))
    def applied_by(self, obj: PriceChange) -> str:
        if obj.changed_by_id:
            return obj.changed_by.get_username()
        return obj.rule_description or "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    search_fields = ("name",)


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    search_fields = ("name",)
