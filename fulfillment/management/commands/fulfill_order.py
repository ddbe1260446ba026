"""`manage.py fulfill_order`: deliver paid orders now, in the foreground, or queue them.

Exit codes: 0 every unit delivered (or queued with --queue); 1 some unit failed or is still
pending; 2 bad input (unknown order, order not paid, unknown provider), nothing changed.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.translation import gettext as _

from fulfillment.registry import get_fulfillment_provider
from fulfillment.services import (
    OrderNotFound,
    OrderNotFulfillable,
    UnitReport,
    fulfill_order,
    order_fulfillment_queue,
    order_fulfillment_reset_for_retry,
)
from orders.models import Order
from orders.state import OrderStatus


class Command(BaseCommand):
    help = (
        "Deliver the undelivered units of PAID orders, showing each unit as it goes. Failed units "
        "get a new attempt; pending ones are re-checked with the same reference."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "order_ids",
            nargs="*",
            metavar="ORDER",
            help="The order's number as customers and the admin show it (its public id), or its database id.",
        )
        parser.add_argument("--all-paid", action="store_true", help="Every order that is PAID.")
        parser.add_argument("--provider", help="Provider for new purchases (default: FULFILLMENT_PROVIDER).")
        parser.add_argument("--queue", action="store_true", help="Queue for the workers instead of running here.")
        parser.add_argument(
            "--rebuy-unknown",
            action="store_true",
            help="Also buy again units whose outcome stayed unknown (only after the provider confirmed they were "
            "not delivered).",
        )

    def handle(
        self,
        *args,
        order_ids: list[str],
        all_paid: bool,
        provider: str | None,
        queue: bool,
        rebuy_unknown: bool = False,
        **options,
    ):
        if not order_ids and not all_paid:
            raise CommandError(_("Give at least one ORDER (its number or database id), or --all-paid."), returncode=2)
        if provider:
            try:
                get_fulfillment_provider(provider)
            except ImproperlyConfigured as exc:
                raise CommandError(str(exc), returncode=2) from exc
            if queue:
                raise CommandError(
                    "--provider applies to foreground runs only; workers use FULFILLMENT_PROVIDER.", returncode=2
                )
        ids, unknown = self._resolve(order_ids)
        if unknown:
            raise CommandError(
                _("Nothing was done.")
                + " "
                + " ".join(
                    _("No order %(word)r: give its number (public id) or its database id.") % {"word": word}
                    for word in unknown
                ),
                returncode=2,
            )
        if all_paid:
            ids += [
                pk
                for pk in Order.objects.filter(status=OrderStatus.PAID).order_by("pk").values_list("pk", flat=True)
                if pk not in ids
            ]
        # Validate everything before changing anything.
        statuses = dict(Order.objects.filter(pk__in=ids).values_list("pk", "status"))
        problems = [str(OrderNotFound(pk)) for pk in ids if pk not in statuses]
        problems += [
            str(OrderNotFulfillable(pk, statuses[pk]))
            for pk in ids
            if pk in statuses and statuses[pk] != OrderStatus.PAID
        ]
        if problems:
            raise CommandError(_("Nothing was done.") + " " + " ".join(problems), returncode=2)
        if not ids:
            self.stdout.write(_("No paid orders to deliver."))
            return

        numbers = dict(Order.objects.filter(pk__in=ids).values_list("pk", "public_id"))
        failed_orders = []
        for position, order_id in enumerate(ids, start=1):
            prefix = f"[{position}/{len(ids)}] " + _("order %(number)s") % {"number": numbers.get(order_id, order_id)}
            try:
                decision = order_fulfillment_reset_for_retry(order_id=order_id, rebuy_unknown=rebuy_unknown)
            except (OrderNotFound, OrderNotFulfillable) as exc:  # changed since validation
                self.stderr.write(f"{prefix}: " + _("skipped, %(why)s") % {"why": exc})
                failed_orders.append(order_id)
                continue
            if decision.held_unknown:
                self.stderr.write(f"{prefix}: {decision.held_reason}")
            if not decision.queued:
                self.stdout.write(f"{prefix}: {decision.reason}")
                if decision.held_unknown:
                    failed_orders.append(order_id)
                continue
            if queue:
                with transaction.atomic():
                    order_fulfillment_queue(order_id=order_id)
                self.stdout.write(f"{prefix}: " + _("queued"))
                continue
            self.stdout.write(f"{prefix}: " + _("delivering..."))
            report = fulfill_order(order_id, provider=provider, on_unit=self._show_unit)
            line = f"{prefix}: " + _("%(delivered)d/%(total)d units delivered, order %(status)s") % {
                "delivered": report.units_delivered,
                "total": report.units_total,
                "status": report.order_status,
            }
            if report.skipped:
                line += f" ({report.skipped})"
            if report.complete:
                self.stdout.write(self.style.SUCCESS(line))
            else:
                self.stdout.write(self.style.WARNING(line))
                failed_orders.append(order_id)

        summary = (
            _("Summary: %(count)d order(s) queued, %(failed)d not fully delivered.")
            if queue
            else _("Summary: %(count)d order(s) processed, %(failed)d not fully delivered.")
        )
        self.stdout.write(summary % {"count": len(ids), "failed": len(failed_orders)})
        if failed_orders:
            raise CommandError(
                _(
                    "Not fully delivered: %(orders)s. Failed units are retried automatically when a retry can "
                    "help; see each order's attempts in the admin."
                )
                % {"orders": ", ".join(str(numbers.get(pk, pk)) for pk in failed_orders)},
                returncode=1,
            )

    @staticmethod
    def _resolve(words: list[str]) -> tuple[list[int], list[str]]:
        """Order pks for `words` (public ids or database ids, in the order given), and the words that
        name no order. A public id is tried first: it is what people copy from pages and emails."""
        ids: list[int] = []
        unknown: list[str] = []
        for word in dict.fromkeys(word.strip() for word in words):
            pk = Order.objects.filter(public_id=word).values_list("pk", flat=True).first()
            if pk is None and word.isdigit():
                pk = Order.objects.filter(pk=int(word)).values_list("pk", flat=True).first()
            if pk is None:
                unknown.append(word)
            elif pk not in ids:
                ids.append(pk)
        return ids, unknown

    def _show_unit(self, unit: UnitReport) -> None:
        detail = f"serial {unit.serial}" if unit.serial else f"{unit.code} {unit.message}".strip()
        self.stdout.write(f"    unit {unit.unit_key} [{unit.kind}] {unit.outcome}: {detail}")
