# Drops Delivery's single-column order_id index: delivery_order_status (order_id, status) serves
# every look-up by order. Only the index is dropped: a plain AlterField would also drop and re-add
# the foreign key, which PostgreSQL re-validates by reading the whole table under a lock.

import django.db.models.deletion
from django.db import migrations, models

INDEX = "fulfillment_delivery_order_id_fff1b746"


class Migration(migrations.Migration):
    dependencies = [
        ("fulfillment", "0004_staff_console_indexes"),
        ("orders", "0009_orderitem_snapshot"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="delivery",
                    name="order",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="deliveries",
                        to="orders.order",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{INDEX}"',
                    reverse_sql=f'CREATE INDEX "{INDEX}" ON "fulfillment_delivery" ("order_id")',
                ),
            ],
        ),
    ]
