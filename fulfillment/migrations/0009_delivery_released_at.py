"""Units released through a deposit halt (Delivery.released_at), and the provider price of the
items still waiting to be sent, so a deposit halt can tell which of them the deposit covers."""

from django.db import migrations, models
from django.db.models import Exists, OuterRef, Subquery


def price_waiting_items(apps, schema_editor):
    """Items made before OrderItem.provider_price existed and still waiting: their product's last
    synced price is the best known estimate. Only open units' items: a handful, not the table."""
    Delivery = apps.get_model("fulfillment", "Delivery")
    OrderItem = apps.get_model("orders", "OrderItem")
    Product = apps.get_model("orders", "Product")
    waiting = Delivery.objects.filter(item=OuterRef("pk"), status="waiting")
    OrderItem.objects.filter(Exists(waiting), provider_price__isnull=True).update(
        provider_price=Subquery(Product.objects.filter(pk=OuterRef("product_id")).values("provider_price")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [
        ("fulfillment", "0008_translatable_labels"),
        ("orders", "0013_orderitem_provider_price"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="released_at",
            field=models.DateTimeField(
                blank=True,
                help_text=(
                    "Let through a deposit halt of its provider at this time: the deposit seen covers it. "
                    "Cleared when it goes back to waiting or the halt ends."
                ),
                null=True,
                verbose_name="released at",
            ),
        ),
        migrations.RunPython(price_waiting_items, migrations.RunPython.noop, elidable=True),
    ]
