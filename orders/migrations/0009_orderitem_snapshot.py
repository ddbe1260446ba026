# What an order item buys is kept on the item: the product's SKU and max provider price, and the
# provider, as of the order. Existing items take their product's current SKU and cap (the best
# record there is) and keep an empty provider, which means "the configured provider", as before.

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    OrderItem = apps.get_model("orders", "OrderItem")
    Product = apps.get_model("orders", "Product")
    product = Product.objects.filter(pk=OuterRef("product_id"))
    OrderItem.objects.filter(sku="").update(
        sku=Subquery(product.values("sku")[:1]),
        max_provider_price=Subquery(product.values("max_provider_price")[:1]),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0008_staff_console"),
    ]

    operations = [
        migrations.AddField(
            model_name="orderitem",
            name="max_provider_price",
            field=models.PositiveBigIntegerField(
                blank=True, help_text="The product's max provider price when the order was made; empty: no cap.", null=True
            ),
        ),
        migrations.AddField(
            model_name="orderitem",
            name="provider",
            field=models.CharField(
                blank=True,
                default="",
                help_text="The provider chosen when the order was made; empty (older items): the configured provider.",
                max_length=50,
            ),
        ),
        migrations.AddField(
            model_name="orderitem",
            name="sku",
            field=models.CharField(
                default="",
                help_text="The product's SKU when the order was made.",
                max_length=100,
                verbose_name="provider SKU as sold",
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
