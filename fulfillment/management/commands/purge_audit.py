"""`manage.py purge_audit --older-than 180d [--dry-run]`: delete old audit rows no money
question needs, keeping the rest.

What goes and what stays is decided by the retention services (orders/services/retention.py for
payment notifications, fulfillment/services/retention.py for delivery attempts) and listed in
docs/operations.md "Retention".
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import gettext as _

from fulfillment.services.retention import delivery_attempts_purge
from orders.services.retention import payment_notifications_purge

_DURATION = re.compile(r"^\s*(\d+)\s*([dh])\s*$", re.IGNORECASE)


def parse_age(text: str) -> timedelta:
    """ "180d" -> 180 days, "12h" -> 12 hours; at least one hour."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            _("--older-than takes a number of days or hours such as 180d or 12h, not %(value)r.") % {"value": text}
        )
    amount, unit = int(match.group(1)), match.group(2).lower()
    if amount > 100 * 366:
        raise ValueError(
            _("--older-than %(value)s is more than a century; use days (180d) or hours (12h).") % {"value": text}
        )
    age = timedelta(days=amount) if unit == "d" else timedelta(hours=amount)
    if age < timedelta(hours=1):
        raise ValueError(_("--older-than must be at least 1h: the newest rows are the ones being looked at."))
    return age


class Command(BaseCommand):
    help = (
        "Delete audit rows older than --older-than that no money question needs: summaries of "
        "rejected payment notifications, authenticated notifications that changed nothing on final "
        "orders, and 'still pending' checks and callbacks of settled units on final orders."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than", required=True, help="Age of the rows to consider: 180d, 30d, 12h...")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--batch-size", type=int, default=1000, help="Rows deleted per transaction (1000).")

    def handle(self, *args, older_than: str, dry_run: bool, batch_size: int, **options) -> None:
        try:
            age = parse_age(older_than)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if batch_size < 1:
            raise CommandError(_("--batch-size must be at least 1, not %(value)s.") % {"value": batch_size})
        before = timezone.now() - age
        values = {"age": older_than.strip(), "before": f"{before:%Y-%m-%d %H:%M:%S %Z}"}
        if dry_run:
            self.stdout.write(_("Dry run: purging audit rows older than %(age)s (before %(before)s).") % values)
        else:
            self.stdout.write(_("Purging audit rows older than %(age)s (before %(before)s).") % values)
        results = {}
        for label, purge in (
            (_("payment notifications"), payment_notifications_purge),
            (_("delivery attempts"), delivery_attempts_purge),
        ):

            def progress(done: int, label: str = label) -> None:
                self.stdout.write(_("  %(label)s: %(done)s deleted so far") % {"label": label, "done": f"{done:,}"})

            results[label] = purge(before=before, dry_run=dry_run, batch_size=batch_size, progress=progress)
        self.stdout.write(_("Summary:"))
        for label, result in results.items():
            numbers = {"label": label, "deleted": f"{result.deleted:,}", "kept": f"{result.kept:,}"}
            if dry_run:
                line = _(
                    "  %(label)s: would delete %(deleted)s; kept %(kept)s older rows that a money question may need"
                )
            else:
                line = _("  %(label)s: deleted %(deleted)s; kept %(kept)s older rows that a money question may need")
            self.stdout.write(line % numbers)
        if dry_run:
            self.stdout.write(_("Nothing was deleted (--dry-run)."))
        else:
            self.stdout.write(self.style.SUCCESS(_("Done.")))
