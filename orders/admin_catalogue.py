"""Admin for the catalogue: products (shop price, how it was made, the supplier's word on it) and
each product's backup supplier SKUs, which delivery tries when the product's own SKU cannot be
bought (fulfillment.services.routing).

Registered with the rest of the orders admin: orders/admin.py imports this module.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from fulfillment.registry import provider_names
from fulfillment_site.console.formatting import provider_amount, rubles, rubles_html
from orders.models import PriceChangeReason, Product, ProductSource
from orders.services.pricing import product_price_after_staff_edit, products_below_margin, products_reprice


class ManualPriceFilter(admin.SimpleListFilter):
    title = _("price")
    parameter_name = "manual_price"

    def lookups(self, request, model_admin):
        return [
            ("manual", _("Manual price")),
            ("rules", _("Priced by the rules")),
            ("below_margin", _("Below the minimum margin")),
        ]

    def queryset(self, request, queryset):
        if self.value() == "manual":
            return queryset.filter(manual_price_kopecks__isnull=False)
        if self.value() == "rules":
            return queryset.filter(manual_price_kopecks__isnull=True)
        if self.value() == "below_margin":
            return queryset.filter(pk__in=[pk for pk, *_rest in products_below_margin()])
        return queryset


class ProviderAvailabilityFilter(admin.SimpleListFilter):
    title = _("at provider")
    parameter_name = "at_provider"

    def lookups(self, request, model_admin):
        return [("disabled", _("Disabled by provider")), ("available", _("Available")), ("unknown", _("Never synced"))]

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
        fields = (
            "name",
            "sku",
            "price_kopecks",
            "manual_price_kopecks",
            "category",
            "brand",
            "is_active",
            "max_provider_price",
            "recipient_label",
            "recipient_pattern",
        )
        labels = {"price_kopecks": _("Shop price (kopecks)")}
        help_texts = {
            "price_kopecks": _(
                "In kopecks: 80000 is 800.00 ₽. Made by the price rules from the supplier cost; a price typed "
                "here becomes the manual price."
            )
        }

    def clean(self):
        cleaned = super().clean()
        # Products created by the price-list sync start at price 0: selling them so would be free.
        if cleaned.get("is_active") and not (cleaned.get("manual_price_kopecks") or cleaned.get("price_kopecks")):
            raise forms.ValidationError(_("Set a shop price (in kopecks) above 0 before activating this product."))
        return cleaned


class ProductSourceForm(forms.ModelForm):
    class Meta:
        model = ProductSource
        fields = ("position", "provider", "sku")

    def clean_provider(self) -> str:
        provider = self.cleaned_data.get("provider", "").strip()
        if provider and provider not in provider_names():
            raise forms.ValidationError(
                _("Unknown provider %(name)s. Use one of: %(names)s, or leave it empty for the configured one.")
                % {"name": provider, "names": ", ".join(provider_names())}
            )
        return provider

    def clean_sku(self) -> str:
        return self.cleaned_data.get("sku", "").strip()


class ProductSourceInline(admin.TabularInline):
    """The product's backup SKUs, tried in position order after its own SKU."""

    model = ProductSource
    form = ProductSourceForm
    extra = 0
    verbose_name = _("backup supplier SKU")
    verbose_name_plural = _("Backup supplier SKUs (tried in position order after the product's own SKU)")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    list_display = (
        "name",
        "sku",
        "price",
        "price_source",
        "cost",
        "is_active",
        "provider_price_text",
        "provider_status",
        "provider_synced_at",
    )
    list_filter = ("is_active", ProviderAvailabilityFilter, ManualPriceFilter, "category", "brand")
    list_select_related = ("category", "brand")
    search_fields = ("name", "sku")
    readonly_fields = (
        "provider_price",
        "provider_available",
        "provider_synced_at",
        "cost_kopecks",
        "priced_rate",
        "priced_at",
        "created_at",
        "updated_at",
    )
    actions = ("reprice",)
    inlines = (ProductSourceInline,)

    def get_formsets_with_inlines(self, request, obj=None):
        # A change posted without the backup SKUs' rows (a script that edits the price, a page
        # rendered before the inline existed) leaves the backup SKUs as they are, rather than
        # refusing the whole change for a missing management form.
        posted_without = request.method == "POST" and "sources-TOTAL_FORMS" not in request.POST
        for formset, inline in super().get_formsets_with_inlines(request, obj):
            if posted_without and isinstance(inline, ProductSourceInline):
                continue
            yield formset, inline

    @admin.display(description=_("Shop price"), ordering="price_kopecks")
    def price(self, obj: Product):
        return rubles_html(obj.price_kopecks)

    @admin.display(description=_("Priced by"))
    def price_source(self, obj: Product) -> str:
        return _("manual price") if obj.manual_price_kopecks is not None else _("price rules")

    @admin.display(description=_("Cost"), ordering="cost_kopecks")
    def cost(self, obj: Product) -> str:
        return rubles(obj.cost_kopecks) if obj.cost_kopecks is not None else "—"

    def save_model(self, request, obj: Product, form, change) -> None:
        old_price = (
            Product.objects.filter(pk=obj.pk).values_list("price_kopecks", flat=True).first() if change else None
        )
        # A price typed by hand is a manual price: the rules must not overwrite it at the next sync.
        if change and "price_kopecks" in form.changed_data and "manual_price_kopecks" not in form.changed_data:
            obj.manual_price_kopecks = obj.price_kopecks
        super().save_model(request, obj, form, change)
        product_price_after_staff_edit(product_id=obj.pk, old_price=old_price, changed_by=request.user)

    @admin.action(description=_("Recalculate prices by the price rules"))
    def reprice(self, request, queryset) -> None:
        report = products_reprice(
            reason=PriceChangeReason.RULE, changed_by=request.user, product_ids=queryset.values_list("pk", flat=True)
        )
        if report.problem:
            self.message_user(request, report.problem, messages.WARNING)
        else:
            self.message_user(
                request,
                _("Prices recalculated: %(checked)d products checked, %(changed)d prices changed.")
                % {"checked": report.checked, "changed": report.changed},
                messages.SUCCESS,
            )

    @admin.display(description=_("Provider price"), ordering="provider_price")
    def provider_price_text(self, obj: Product) -> str:
        return provider_amount(obj.provider_price) if obj.provider_price is not None else "—"

    @admin.display(description=_("At provider"), ordering="provider_available")
    def provider_status(self, obj: Product) -> str:
        if obj.provider_available is None:
            return _("unknown")
        if obj.provider_available:
            return _("available")
        return format_html('<strong style="color: #ba2121;">{}</strong>', _("DISABLED by provider"))
