"""The records of pricing: categories and brands, exchange rates, staff's price rules, and every
change of a product's shop price. How a price is made is orders.services.pricing."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Category(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Brand(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)

    class Meta:
        verbose_name = _("brand")
        verbose_name_plural = _("brands")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RateSource(models.TextChoices):
    CBR = "cbr", _("Central Bank of Russia")
    FIXED = "fixed", _("fixed by staff")


class ExchangeRate(models.Model):
    """Roubles for one unit of `currency`, set for `date` (the Central Bank's value over its nominal)."""

    currency = models.CharField(_("currency"), max_length=3, default="IDR")
    date = models.DateField(_("date"), help_text=_("The day the rate is set for."))
    rub_per_unit = models.DecimalField(_("roubles per unit"), max_digits=20, decimal_places=12)
    source = models.CharField(_("source"), max_length=10, choices=RateSource.choices, default=RateSource.CBR)
    fetched_at = models.DateTimeField(_("fetched"), auto_now_add=True)

    class Meta:
        verbose_name = _("exchange rate")
        verbose_name_plural = _("exchange rates")
        ordering = ["-date", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["currency", "date", "source"], name="exchangerate_currency_date_source")
        ]

    def __str__(self) -> str:
        return f"{self.currency} {self.date}: {self.rub_per_unit} RUB"


class PriceRounding(models.TextChoices):
    ROUBLE = "rouble", _("up to whole roubles")
    TEN = "ten", _("up to 10 ₽")
    NINE = "nine", _("up to a price ending in 9 ₽")


class PriceRule(models.Model):
    """A markup rule for one product, brand or category, or the default (none of the three). The
    most specific active rule that matches a product prices it."""

    product = models.OneToOneField(
        "orders.Product",
        null=True,
        blank=True,
        related_name="price_rule",
        on_delete=models.CASCADE,
        verbose_name=_("product"),
    )
    brand = models.OneToOneField(
        Brand, null=True, blank=True, related_name="price_rule", on_delete=models.CASCADE, verbose_name=_("brand")
    )
    category = models.OneToOneField(
        Category,
        null=True,
        blank=True,
        related_name="price_rule",
        on_delete=models.CASCADE,
        verbose_name=_("category"),
    )
    markup_percent = models.DecimalField(_("markup, %"), max_digits=7, decimal_places=2, default=0)
    fixed_kopecks = models.BigIntegerField(
        _("fixed addition (kopecks)"), default=0, help_text=_("Added after the markup, before rounding.")
    )
    min_margin_kopecks = models.PositiveBigIntegerField(
        _("minimum margin (kopecks)"), default=0, help_text=_("The price is never below cost plus this.")
    )
    rounding = models.CharField(
        _("rounding"), max_length=10, choices=PriceRounding.choices, default=PriceRounding.ROUBLE
    )
    is_active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("price rule")
        verbose_name_plural = _("price rules")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(product__isnull=True, brand__isnull=True)
                    | Q(product__isnull=True, category__isnull=True)
                    | Q(brand__isnull=True, category__isnull=True)
                ),
                name="pricerule_one_scope",
            ),
            models.UniqueConstraint(
                fields=["is_active"],
                condition=Q(product__isnull=True, brand__isnull=True, category__isnull=True, is_active=True),
                name="pricerule_one_active_default",
            ),
            models.CheckConstraint(condition=Q(markup_percent__gt=-100), name="pricerule_markup_above_minus_100"),
        ]

    def __str__(self) -> str:
        return f"{self.scope}: +{self.markup_percent}%"

    @property
    def scope(self) -> str:
        if self.product_id:
            return _("product %(name)s") % {"name": self.product.name}
        if self.brand_id:
            return _("brand %(name)s") % {"name": self.brand.name}
        if self.category_id:
            return _("category %(name)s") % {"name": self.category.name}
        return str(_("default"))

    def describe(self) -> str:
        """The rule as applied, for the price change record: scope, markup, addition, margin, rounding."""
        return (
            f"{self.scope}: +{self.markup_percent}% +{self.fixed_kopecks / 100:.2f} ₽, "
            f"min margin {self.min_margin_kopecks / 100:.2f} ₽, {self.get_rounding_display()}"
        )[:200]


class PriceChangeReason(models.TextChoices):
    SYNC = "sync", _("supplier price list")
    RATE = "rate", _("exchange rate")
    RULE = "rule", _("price rules")
    MANUAL = "manual", _("manual price")


class PriceChange(models.Model):
    """One change of a product's shop price, with what it was made from."""

    product = models.ForeignKey(
        "orders.Product", related_name="price_changes", on_delete=models.CASCADE, verbose_name=_("product")
    )
    old_price_kopecks = models.PositiveBigIntegerField(_("old price (kopecks)"))
    new_price_kopecks = models.PositiveBigIntegerField(_("new price (kopecks)"))
    cost = models.PositiveBigIntegerField(_("supplier cost"), null=True, blank=True, help_text=_("In rupiah."))
    cost_kopecks = models.PositiveBigIntegerField(_("cost (kopecks)"), null=True, blank=True)
    rate = models.DecimalField(_("rate"), max_digits=20, decimal_places=12, null=True, blank=True)
    rule = models.ForeignKey(
        PriceRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("rule")
    )
    rule_description = models.CharField(_("rule as applied"), max_length=200, blank=True)
    reason = models.CharField(_("reason"), max_length=10, choices=PriceChangeReason.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("changed by"),
    )
    created_at = models.DateTimeField(_("when"), auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("price change")
        verbose_name_plural = _("price changes")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.product_id}: {self.old_price_kopecks} → {self.new_price_kopecks}"


class ProductSource(models.Model):
    """A backup supplier SKU of a product: the same item from another seller (or another
    provider). A unit is bought through the product's own SKU first, then through these in
    `position` order, whichever can be bought now (fulfillment.services.routing)."""

    product = models.ForeignKey(
        "orders.Product", related_name="sources", on_delete=models.CASCADE, verbose_name=_("product")
    )
    position = models.PositiveSmallIntegerField(
        _("position"), default=1, help_text=_("Tried in this order, lowest first.")
    )
    provider = models.CharField(
        _("provider"), max_length=50, blank=True, help_text=_("Empty: the configured provider (FULFILLMENT_PROVIDER).")
    )
    sku = models.CharField(_("supplier SKU"), max_length=100, help_text=_("The provider's product code."))

    class Meta:
        verbose_name = _("backup supplier SKU")
        verbose_name_plural = _("backup supplier SKUs")
        ordering = ["product_id", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["product", "provider", "sku"], name="productsource_once_per_product")
        ]

    def __str__(self) -> str:
        return f"{self.sku} ({self.provider or 'default provider'})"
