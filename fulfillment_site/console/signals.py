"""Signal wiring of the console: a halt created or lifted in this process shows at once."""

from django.db.models.signals import post_delete, post_save

from fulfillment.models import ProviderHalt
from fulfillment_site.console.banner import forget_halts

post_save.connect(forget_halts, sender=ProviderHalt, dispatch_uid="console-halt-saved")
post_delete.connect(forget_halts, sender=ProviderHalt, dispatch_uid="console-halt-deleted")
