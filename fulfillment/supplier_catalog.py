"""The supplier's catalogue as last synced: one SupplierSku per (provider, SKU code), with what
decides whether it can be sold now (buyer and seller status, stock, the daily cut-off window).

Digiflazz publishes the cut-off window in Western Indonesian Time (WIB, UTC+7): a purchase
inside it is refused until the window ends. A window may wrap midnight (23:45 → 00:15).
`sku_sellability` is the one place that judges a SKU; the catalogue API and checkout ask it
through fulfillment.selectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

WIB = dt_timezone(timedelta(hours=7), "WIB")


class SupplierSku(models.Model):
    """One purchasable item of a provider, as its price list describes it."""

    provider = models.CharField(_("provider"), max_length=50)
    code = models.CharField(_("SKU code"), max_length=100, help_text=_("Digiflazz buyer_sku_code."))
    product_name = models.CharField(_("supplier's name"), max_length=200, blank=True)
    category = models.CharField(_("supplier category"), max_length=100, blank=True)
    brand = models.CharField(_("supplier brand"), max_length=100, blank=True)
    type = models.CharField(_("supplier type"), max_length=100, blank=True)
    seller_name = models.CharField(_("seller"), max_length=200, blank=True)
    price = models.PositiveBigIntegerField(
        _("supplier price"), null=True, blank=True, help_text=_("Price of one unit in the supplier's currency.")
    )
    currency = models.CharField(_("currency"), max_length=3, default="IDR")
    buyer_product_status = models.BooleanField(_("buyer status"), default=False)
    seller_product_status = models.BooleanField(_("seller status"), default=False)
    unlimited_stock = models.BooleanField(_("unlimited stock"), default=False)
    stock = models.PositiveBigIntegerField(_("stock"), null=True, blank=True)
    multi = models.BooleanField(_("multiple purchases allowed"), default=True)
    start_cut_off = models.TimeField(_("cut-off starts (WIB)"), null=True, blank=True)
    end_cut_off = models.TimeField(_("cut-off ends (WIB)"), null=True, blank=True)
    description = models.TextField(_("description"), blank=True)
    in_price_list = models.BooleanField(
        _("in the last price list"), default=True, help_text=_("Whether the last sync listed this SKU.")
    )
    synced_at = models.DateTimeField(_("synced"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("supplier SKU")
        verbose_name_plural = _("supplier SKUs")
        ordering = ["provider", "code"]
        constraints = [models.UniqueConstraint(fields=["provider", "code"], name="suppliersku_provider_code")]

    def __str__(self) -> str:
        return f"{self.code} ({self.provider})"


@dataclass(frozen=True)
class Sellability:
    """Whether a SKU can be bought now; if not, why, and when it may be again (None: unknown)."""

    sellable: bool
    reason: str = ""  # lazy: rendered in the language of whoever shows it
    again_at: datetime | None = None


def in_cut_off(*, start: time | None, end: time | None, at: datetime) -> datetime | None:
    """The end of the cut-off window `at` falls in (an aware datetime), or None when outside it.
    Times are WIB; a window with start == end, or with a missing bound, is no window."""
    if start is None or end is None or start == end:
        return None
    local = at.astimezone(WIB)
    now = local.time()
    if start < end:
        inside = start <= now < end
        end_day = local.date()
    else:  # wraps midnight
        inside = now >= start or now < end
        end_day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=WIB)


def sku_sellability(sku: SupplierSku, *, at: datetime | None = None) -> Sellability:
    """The one judgement of whether `sku` can be bought at `at` (default now)."""
    at = at or timezone.now()
    if not sku.in_price_list:
        return Sellability(False, _("not in the supplier's price list"))
    if not (sku.buyer_product_status and sku.seller_product_status):
        return Sellability(False, _("switched off by the supplier"))
    if not sku.unlimited_stock and not sku.stock:
        return Sellability(False, _("out of stock"))
    cut_off_end = in_cut_off(start=sku.start_cut_off, end=sku.end_cut_off, at=at)
    if cut_off_end is not None:
        return Sellability(False, _("in the supplier's daily cut-off"), cut_off_end)
    return Sellability(True)
