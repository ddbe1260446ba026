"""URL routes: the admin (staff console), the T-Bank payment webhook, provider callbacks and /metrics."""

from django.conf import settings
from django.contrib import admin
from django.urls import path

from console.views import metrics_view
from fulfillment.views import DigiflazzCallbackView
from orders.views import TBankNotificationView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/payments/tbank/notification", TBankNotificationView.as_view(), name="tbank-notification"),
    path("api/fulfillment/digiflazz/callback", DigiflazzCallbackView.as_view(), name="digiflazz-callback"),
    path("metrics", metrics_view, name="metrics"),
]

if settings.BENCHMARK_FLOOR_ENDPOINT:
    from bench.floor import floor_view

    urlpatterns.append(path("bench/floor", floor_view, name="bench-floor"))
