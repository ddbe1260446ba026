"""URL routes: the admin, the T-Bank payment webhook and provider callbacks."""

from django.contrib import admin
from django.urls import path

from orders.views import TBankNotificationView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/payments/tbank/notification", TBankNotificationView.as_view(), name="tbank-notification"),
]
