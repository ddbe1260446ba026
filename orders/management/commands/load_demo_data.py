"""`manage.py load_demo_data`: demo products, a few NEW orders and a local admin user.

Development only (refuses unless DJANGO_DEBUG is on). Safe to run again: it adds what is
missing and prints the admin password it set.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from orders.models import Order, Product
from orders.services import ItemSpec, order_create
from orders.state import OrderStatus

DEMO_PRODUCTS = [
    ("Mobile credit 10k", "xld10", 15000),
    ("Mobile credit 25k", "xld25", 30000),
    ("Game top-up 86 diamonds", "ml86", 25000),
    ("Voucher 50k", "vc50", 55000),
]
# What the customer gives as the recipient of each demo product (label, pattern).
DEMO_RECIPIENTS = {
    "xld10": ("Phone number", r"08[0-9]{8,11}"),
    "xld25": ("Phone number", r"08[0-9]{8,11}"),
    "ml86": ("Player ID", r"[0-9]{4,12}"),
    "vc50": ("Email or phone for the voucher", ""),
}


class Command(BaseCommand):
    help = "Load demo products and orders and create a local admin user (development only)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--orders", type=int, default=3, help="NEW demo orders to have (default 3).")
        parser.add_argument("--admin-username", default="admin")

    def handle(self, *args, orders: int, admin_username: str, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("load_demo_data is for development only; set DJANGO_DEBUG=true to use it.")
        products = []
        for name, sku, price in DEMO_PRODUCTS:
            label, pattern = DEMO_RECIPIENTS[sku]
            product, _ = Product.objects.get_or_create(
                sku=sku,
                defaults={"name": name, "price_kopecks": price, "recipient_label": label, "recipient_pattern": pattern},
            )
            products.append(product)
        missing = max(0, orders - Order.objects.filter(status=OrderStatus.NEW).count())
        for n in range(missing):
            items = [ItemSpec(product=products[n % len(products)], recipient="087800001230", quantity=1 + n % 2)]
            if n % 3 == 2:
                items.append(ItemSpec(product=products[(n + 1) % len(products)], recipient="player-1001"))
            order_create(items=items, customer_email=f"customer{n}@example.com")
        new_ids = list(Order.objects.filter(status=OrderStatus.NEW).values_list("pk", flat=True)[:10])
        self.stdout.write(f"Demo products: {len(products)}; NEW orders to pay: {', '.join(map(str, new_ids))}")

        password = secrets.token_urlsafe(12)
        user, created = get_user_model().objects.get_or_create(
            username=admin_username, defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(password)
        user.save()
        self.stdout.write(
            self.style.SUCCESS(
                f"Admin user '{admin_username}' {'created' if created else 'reset'}; password: {password} "
                "(development only, printed once)"
            )
        )
        if new_ids:
            self.stdout.write(f"Pay one: python manage.py simulate_payment {new_ids[0]}")
