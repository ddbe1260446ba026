"""The shop's catalogue around its products: categories and brands, the ordered supplier SKUs
a product is bought through (its route), exchange rates, staff's price rules, and the record
of every price change.

How a price is made (orders.services.pricing): cost in the supplier's currency × the rate ×
(1 + markup) + fixed addition, rounded, never below cost + minimum margin; a product's manual
price wins over the rules.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Category(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    slug = models.SlugField(_("slug"), max_length=100, unique=True, allow_unicode=True)
    position = models.PositiveIntegerField(_("position"), default=0, help_text=_("Lower comes first."))

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class Brand(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    slug = models.SlugField(_("slug"), max_length=100, unique=True, allow_unicode=True)

    class Meta:
        verbose_name = _("brand")
        verbose_name_plural = _("brands")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProductSource(models.Model):
    """One step of a product's route: a unit is bought through the first sellable SKU of it."""

    product = models.ForeignKey(
        "orders.Product", related_name="sources", on_delete=models.CASCADE, verbose_name=_("product")
    )
    sku = models.ForeignKey(
        "fulfillment.SupplierSku", related_name="sources", on_delete=models.PROTECT, verbose_name=_("supplier SKU")
    )
    position = models.PositiveSmallIntegerField(_("position"), default=0, help_text=_("Lower is tried first."))

    class Meta:
        verbose_name = _("supplier route step")
        verbose_name_plural = _("supplier route")
        ordering = ["product", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["product", "sku"], name="productsource_product_sku")]

    def __str__(self) -> str:
        return f"{self.product_id} #{self.position}: {self.sku_id}"


class ExchangeRateSource(models.TextChoices):
    CBR = "cbr", _("Central Bank of Russia")
    FIXED = "fixed", _("fixed in settings")


class ExchangeRate(models.Model):
    """Roubles for one unit of `currency` on `date` (the CBR's rate divided by its nominal)."""

    currency = models.CharField(_("currency"), max_length=3, default="IDR")
    date = models.DateField(_("date"), help_text=_("The day the rate is set for."))
    rub_per_unit = models.DecimalField(_("roubles per unit"), max_digits=20, decimal_places=10)
    source = models.CharField(
        _("source"), max_length=10, choices=ExchangeRateSource.choices, default=ExchangeRateSource.CBR
    )
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
    KOPECK = "kopeck", _("to the kopeck")
    ROUBLE = "rouble", _("to whole roubles")
    TEN = "ten", _("to 10 ₽")
    NINE = "nine", _("to a price ending in 9")


class PriceRule(models.Model):
    """A markup rule. At most one of product, brand, category is set; none: the default rule.
    The most specific active rule that matches a product prices it."""

    product = models.ForeignKey(
        "orders.Product",
        null=True,
        blank=True,
        related_name="price_rules",
        on_delete=models.CASCADE,
        verbose_name=_("product"),
    )
    brand = models.ForeignKey(
        Brand, null=True, blank=True, related_name="price_rules", on_delete=models.CASCADE, verbose_name=_("brand")
    )
    category = models.ForeignKey(
        Category,
        null=True,
        blank=True,
        related_name="price_rules",
        on_delete=models.CASCADE,
        verbose_name=_("category"),
    )
    markup_percent = models.DecimalField(_("markup, %"), max_digits=7, decimal_places=2, default=0)
    fixed_kopecks = models.BigIntegerField(_("fixed addition (kopecks)"), default=0)
    min_margin_kopecks = models.PositiveBigIntegerField(_("minimum margin (kopecks)"), default=0)
    rounding = models.CharField(
        _("rounding"), max_length=10, choices=PriceRounding.choices, default=PriceRounding.ROUBLE
    )
    is_active = models.BooleanField(_("active"), default=True)
    note = models.CharField(_("note"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
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
                fields=["product"], condition=Q(product__isnull=False), name="pricerule_one_per_product"
            ),
            models.UniqueConstraint(fields=["brand"], condition=Q(brand__isnull=False), name="pricerule_one_per_brand"),
            models.UniqueConstraint(
                fields=["category"], condition=Q(category__isnull=False), name="pricerule_one_per_category"
            ),
            models.UniqueConstraint(
                fields=["is_active"],
                condition=Q(product__isnull=True, brand__isnull=True, category__isnull=True),
                name="pricerule_one_default",
            ),
        ]

    def __str__(self) -> str:
        if self.product_id:
            scope = _("product %(name)s") % {"name": self.product}
        elif self.brand_id:
            scope = _("brand %(name)s") % {"name": self.brand}
        elif self.category_id:
            scope = _("category %(name)s") % {"name": self.category}
        else:
            scope = _("default")
        return f"{scope}: +{self.markup_percent}%"


class PriceChangeReason(models.TextChoices):
    SYNC = "sync", _("supplier price list")
    RATE = "rate", _("exchange rate")
    RULE = "rule", _("price rule changed")
    MANUAL = "manual", _("manual price")


class PriceChange(models.Model):
    """One change of a product's shop price, with what it was made from."""

    product = models.ForeignKey(
        "orders.Product", related_name="price_changes", on_delete=models.CASCADE, verbose_name=_("product")
    )
    old_price_kopecks = models.PositiveBigIntegerField(_("old price (kopecks)"), null=True, blank=True)
    new_price_kopecks = models.PositiveBigIntegerField(_("new price (kopecks)"))
    cost = models.PositiveBigIntegerField(
        _("supplier cost"), null=True, blank=True, help_text=_("In the supplier's currency.")
    )
    cost_kopecks = models.PositiveBigIntegerField(_("cost (kopecks)"), null=True, blank=True)
    rate = models.DecimalField(_("rate"), max_digits=20, decimal_places=10, null=True, blank=True)
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
