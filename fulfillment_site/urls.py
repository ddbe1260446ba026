"""URL routes: the admin (staff console), the customer API and pages, the T-Bank webhook, provider
callbacks and /metrics."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from fulfillment.views import DigiflazzCallbackView
from fulfillment_site.console.views import metrics_view
from orders.api.views import BrandListView, CategoryListView, OrderCreateView, OrderStatusView, ProductListView
from orders.pages import favicon, home_page, order_pay_again_page, order_status_page, sandbox_pay_page
from orders.views import TBankNotificationView

urlpatterns = [
    path("", home_page, name="home"),
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    # set_language: the language switch in the admin's header (and on customer pages) posts here.
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/products", ProductListView.as_view(), name="product-list"),
    path("api/categories", CategoryListView.as_view(), name="category-list"),
    path("api/brands", BrandListView.as_view(), name="brand-list"),
    path("api/orders", OrderCreateView.as_view(), name="order-create"),
    path("api/orders/<str:public_id>", OrderStatusView.as_view(), name="order-status"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("orders/<str:public_id>/", order_status_page, name="order-status-page"),
    path("orders/<str:public_id>/pay-again", order_pay_again_page, name="order-pay-again"),
    # Answers 404 unless TBANK_SANDBOX (development); routed always so its links can be built.
    path("sandbox/tbank/pay/<str:payment_id>", sandbox_pay_page, name="tbank-sandbox-pay"),
    path("api/payments/tbank/notification", TBankNotificationView.as_view(), name="tbank-notification"),
    path("api/fulfillment/digiflazz/callback", DigiflazzCallbackView.as_view(), name="digiflazz-callback"),
    path("metrics", metrics_view, name="metrics"),
]

if settings.BENCHMARK_FLOOR_ENDPOINT:
    from bench.floor import floor_view

    urlpatterns.append(path("bench/floor", floor_view, name="bench-floor"))
