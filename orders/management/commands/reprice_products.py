"""`manage.py reprice_products [--fetch-rate]`: price the catalogue by the price rules now, with
progress; `--fetch-rate` first fetches the Central Bank's rate (as the worker does every hour)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from orders.models import PriceChangeReason
from orders.services.pricing import RateUnavailable, exchange_rate_refresh, products_reprice


class Command(BaseCommand):
    help = "Price every product by the price rules at the current exchange rate (docs/pricing.md)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--fetch-rate", action="store_true", help="Fetch the Central Bank's rate first (a new one reprices)."
        )

    def handle(self, *args, fetch_rate: bool = False, **options) -> None:
        if fetch_rate:
            try:
                rate, report = exchange_rate_refresh()
            except RateUnavailable as exc:
                raise CommandError(
                    _("%(problem)s Check CBR_DAILY_URL and the network, or set PRICING_FIXED_RATE.") % {"problem": exc}
                ) from None
            if rate is not None:
                self.stdout.write(_("Exchange rate: %(rate)s") % {"rate": rate})
        report = products_reprice(reason=PriceChangeReason.RULE, progress=self._progress)
        if report.problem:
            raise CommandError(report.problem)
        self.stdout.write(
            self.style.SUCCESS(
                _("Prices recalculated: %(checked)d products checked, %(changed)d prices changed.")
                % {"checked": report.checked, "changed": report.changed}
            )
        )
        if report.no_cost or report.no_rule:
            self.stdout.write(
                _("%(no_cost)d without a supplier price, %(no_rule)d without a matching rule (their prices are kept).")
                % {"no_cost": report.no_cost, "no_rule": report.no_rule}
            )

    def _progress(self, done: int, total: int) -> None:
        self.stdout.write(_("priced %(done)d/%(total)d products") % {"done": done, "total": total})
