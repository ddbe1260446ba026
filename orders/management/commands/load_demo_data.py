"""`manage.py load_demo_data`: a demo catalogue priced by rules, a few NEW orders and a local admin user.

Development only (refuses unless DJANGO_DEBUG is on). Safe to run again: it adds what is
missing. The admin password is made once and kept (VAR_DIR/admin-password.txt): a second run
prints it again rather than resetting it and logging staff out; --reset-admin-password makes a
new one.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from orders.models import (
    Brand,
    Category,
    Order,
    PriceChangeReason,
    PriceRounding,
    PriceRule,
    Product,
    ProductSource,
)
from orders.services import ItemSpec, order_create
from orders.services.pricing import exchange_rate_in_use, exchange_rate_set_fixed, products_reprice
from orders.state import OrderStatus

# A Russian shop's catalogue: game currency and vouchers, with the supplier's cost in rupiah,
# category and brand. No shop price is set by hand: the price rules below make them.
DEMO_PRODUCTS = [
    ("PUBG Mobile: 325 UC", "pubg325", 83000, "Игры", "PUBG Mobile"),
    ("Genshin Impact: 300 кристаллов", "gi300", 69000, "Игры", "Genshin Impact"),
    ("Steam: пополнение на 500 ₽", "steam500", 98000, "Игры", "Steam"),
    ("Подарочная карта на 1 000 ₽", "gift1000", 190000, "Подарочные карты", "Подарочная карта"),
]
#: A second seller of the same item: its units go through it when the first cannot deliver (see
#: it with MOCK_FULFILLMENT_OUT_OF_STOCK_SKUS=pubg325).
DEMO_BACKUP_SKUS = {"pubg325": "pubg325-b"}
#: Roubles per rupiah until the Central Bank's rate is fetched (the worker does, hourly).
DEMO_RATE = Decimal("0.0052")
# (category or None for the default rule, markup %, minimum margin in kopecks, rounding)
DEMO_RULES = [
    (None, Decimal("12"), 3000, PriceRounding.NINE),
    ("Подарочные карты", Decimal("5"), 2000, PriceRounding.TEN),
]
# What the customer gives as the recipient of each demo product (label, pattern), and a valid one.
DEMO_RECIPIENTS = {
    "pubg325": ("ID игрока", r"[0-9]{5,12}", "5123456789"),
    "gi300": ("UID игрока", r"[0-9]{9,10}", "700123456"),
    "steam500": ("Логин Steam", r"[A-Za-z0-9_]{3,32}", "demo_player"),
    "gift1000": ("Email для карты", "", "gift@example.com"),
}


class Command(BaseCommand):
    help = "Load demo products and orders and create a local admin user (development only)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--orders", type=int, default=3, help="NEW demo orders to have (default 3).")
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument(
            "--reset-admin-password", action="store_true", help="Give the admin user a new password (logs it out)."
        )

    def handle(self, *args, orders: int, admin_username: str, reset_admin_password: bool = False, **options) -> None:
        if not settings.DEBUG:
            raise CommandError(_("load_demo_data is for development only; set DJANGO_DEBUG=true to use it."))
        products = []
        for name, sku, cost, category, brand in DEMO_PRODUCTS:
            label, pattern, _example = DEMO_RECIPIENTS[sku]
            product, _created = Product.objects.get_or_create(
                sku=sku,
                defaults={"name": name, "price_kopecks": 0, "recipient_label": label, "recipient_pattern": pattern},
            )
            if product.provider_price is None or product.category_id is None:
                Product.objects.filter(pk=product.pk).update(
                    provider_price=cost,
                    category=Category.objects.get_or_create(name=category)[0],
                    brand=Brand.objects.get_or_create(name=brand)[0],
                )
            products.append(product)
            if sku in DEMO_BACKUP_SKUS:
                ProductSource.objects.get_or_create(product=product, provider="", sku=DEMO_BACKUP_SKUS[sku])
        for category, markup, margin, rounding in DEMO_RULES:
            group = Category.objects.get(name=category) if category else None
            rules = PriceRule.objects.filter(product=None, brand=None, category=group)
            if not rules.exists():
                PriceRule.objects.create(
                    category=group, markup_percent=markup, min_margin_kopecks=margin, rounding=rounding
                )
        if not exchange_rate_in_use().usable:
            exchange_rate_set_fixed(rub_per_unit=DEMO_RATE)
        report = products_reprice(reason=PriceChangeReason.RULE)
        self.stdout.write(
            report.problem
            or _("Prices recalculated: %(checked)d products checked, %(changed)d prices changed.")
            % {"checked": report.checked, "changed": report.changed}
        )
        for product in products:
            product.refresh_from_db()
        missing = max(0, orders - Order.objects.filter(status=OrderStatus.NEW).count())
        for n in range(missing):
            product = products[n % len(products)]
            items = [ItemSpec(product=product, recipient=DEMO_RECIPIENTS[product.sku][2], quantity=1 + n % 2)]
            if n % 3 == 2:
                other = products[(n + 1) % len(products)]
                items.append(ItemSpec(product=other, recipient=DEMO_RECIPIENTS[other.sku][2]))
            order_create(items=items, customer_email=f"customer{n}@example.com")
        new_orders = list(Order.objects.filter(status=OrderStatus.NEW).values_list("pk", "public_id")[:10])
        self.stdout.write(
            _("Demo products: %(count)s; NEW orders to pay: %(orders)s")
            % {"count": len(products), "orders": ", ".join(number for _pk, number in new_orders)}
        )
        self._admin(admin_username, reset=reset_admin_password)
        if new_orders:
            self.stdout.write(
                _("Pay one: %(command)s")
                % {"command": f".venv/bin/python manage.py simulate_payment {new_orders[0][1]}"}
            )

    def _admin(self, username: str, *, reset: bool) -> None:
        """Create the admin with a new password, or keep the existing one and say it again."""
        saved = Path(settings.VAR_DIR) / "admin-password.txt"
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        known = saved.read_text().strip() if saved.exists() else ""
        if not created and not reset:
            if known and user.check_password(known):
                self.stdout.write(
                    self.style.SUCCESS(
                        _("Admin user '%(user)s' kept; password: %(password)s (saved in %(file)s)")
                        % {"user": username, "password": known, "file": saved}
                    )
                )
            else:
                self.stdout.write(
                    self.style.SUCCESS(
                        _("Admin user '%(user)s' kept with its password. To set a new one: %(command)s")
                        % {
                            "user": username,
                            "command": ".venv/bin/python manage.py load_demo_data --reset-admin-password",
                        }
                    )
                )
            return
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save()
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(password + "\n")
        os.chmod(saved, 0o600)
        values = {"user": username, "password": password, "file": saved}
        if created:
            line = _("Admin user '%(user)s' created; password: %(password)s (development only, saved in %(file)s)")
        else:
            line = _("Admin user '%(user)s' reset; password: %(password)s (development only, saved in %(file)s)")
        self.stdout.write(self.style.SUCCESS(line % values))
