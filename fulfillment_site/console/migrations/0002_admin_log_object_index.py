"""An index on the admin history by object: the order page's timeline reads an order's staff
actions (LogEntry by content type and object id), which Django does not index."""

from django.db import migrations

CREATE = (
    "CREATE INDEX IF NOT EXISTS console_admin_log_object ON django_admin_log (content_type_id, object_id)"
)
DROP = "DROP INDEX IF EXISTS console_admin_log_object"


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0001_staff_console"),
        ("admin", "0003_logentry_add_action_flag_choices"),
    ]

    operations = [migrations.RunSQL(CREATE, DROP)]
