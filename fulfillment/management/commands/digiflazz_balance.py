"""`manage.py digiflazz_balance`: print the Digiflazz deposit and remember it for the admin."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from fulfillment.catalog import provider_balance_refresh
from fulfillment.providers.digiflazz import DigiflazzError


class Command(BaseCommand):
    help = "Show the deposit of the Digiflazz account (also shown in the admin: Fulfillment > Provider accounts)."

    def handle(self, *args, **options) -> None:
        try:
            account = provider_balance_refresh()
        except DigiflazzError as exc:
            raise CommandError(str(exc)) from exc
        checked = account.balance_checked_at.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.stdout.write(
            _("Digiflazz deposit: %(balance)s IDR (checked %(checked)s).")
            % {"balance": f"{account.balance:,}", "checked": checked}
        )
