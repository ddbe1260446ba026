"""`manage.py sync_digiflazz_products`: pull the Digiflazz prepaid price list into the products.

Digiflazz allows the whole list at most once per 5 minutes; a run inside that window is refused
with the time left (there is deliberately no option to override the provider's limit).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from fulfillment.catalog import products_sync_price_list
from fulfillment.providers.digiflazz import DigiflazzError

_NAMES_SHOWN = 50


class Command(BaseCommand):
    help = (
        "Create or update products from the Digiflazz prepaid price list (matched by SKU = buyer_sku_code), "
        "then reprice them by the price rules. New products go on sale once priced with SYNC_AUTO_ACTIVATE, "
        "else they wait for staff."
    )

    def handle(self, *args, **options) -> None:
        self.stdout.write(_("Requesting the prepaid price list from Digiflazz..."))
        try:
            report = products_sync_price_list(on_progress=self._progress)
        except DigiflazzError as exc:
            raise CommandError(str(exc)) from exc
        for label, names in (
            (_("Created (priced by the rules; on sale with SYNC_AUTO_ACTIVATE, else activate them)"), report.created),
            (_("Updated"), report.updated),
            (_("Disabled by the provider"), report.disabled),
            (_("Available again"), report.enabled),
        ):
            if names:
                shown = ", ".join(names[:_NAMES_SHOWN])
                more = (
                    _(" and %(count)s more") % {"count": len(names) - _NAMES_SHOWN} if len(names) > _NAMES_SHOWN else ""
                )
                self.stdout.write(f"{label} ({len(names)}): {shown}{more}")
        self.stdout.write(self.style.SUCCESS(report.summary()))

    def _progress(self, done: int, total: int) -> None:
        self.stdout.write(_("  applied %(done)s/%(total)s SKUs") % {"done": done, "total": total})
