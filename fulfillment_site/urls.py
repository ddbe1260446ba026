"""URL routes: the admin, the T-Bank payment webhook and provider callbacks."""

from django.contrib import admin
from django.urls import path

from fulfillment.views import DigiflazzCallbackView
from orders.views import TBankNotificationView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/payments/tbank/notification", TBankNotificationView.as_view(), name="tbank-notification"),
    path("api/fulfillment/digiflazz/callback", DigiflazzCallbackView.as_view(), name="digiflazz-callback"),
]
