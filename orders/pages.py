"""HTML pages for people: the customer's order status page and the sandbox payment page."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from fulfillment.models import OPEN_STATUSES, Delivery, ProductPause, ProviderHalt
from fulfillment_site.display import money
from orders.models import SandboxPayment
from orders.services.checkout import PaymentUnavailable, order_payment_again
from orders.services.sandbox import sandbox_payment_decide
from orders.state import OrderStatus
from orders.status import FINAL_ORDER_STATUSES, order_for_customer, order_status_data, order_status_path

logger = logging.getLogger(__name__)

LANGUAGE_CODES = {code for code, _name in settings.LANGUAGES}


def home_page(request):
    """GET /: what this service is and where to go (it used to answer a debug 404)."""
    return render(request, "orders/home.html", {})


def favicon(request):
    """GET /favicon.ico: nothing to show, and no 404 in the log on every page."""
    return HttpResponse(status=204)


@never_cache
def order_status_page(request, public_id: str):
    """GET /orders/<id>/?token=...[&lang=ru|en]: the codes, refreshing itself until the order is final."""
    order = order_for_customer(public_id=public_id, token=request.GET.get("token", ""))
    if order is None:
        raise Http404("No order with this id and token.")
    lang = request.GET.get("lang", "")
    if lang in LANGUAGE_CODES:
        translation.activate(lang)
        request.LANGUAGE_CODE = lang
    data = order_status_data(order)
    for item in data["items"]:
        item["total"] = item["unit_price"] * item["quantity"]
    payment = None
    if order.status == OrderStatus.NEW:
        payment = order.payments.exclude(payment_url="").order_by("-id").first()
    final = order.status in FINAL_ORDER_STATUSES
    context = {
        "order": data,
        "final": final,
        "lang": lang if lang in LANGUAGE_CODES else "",
        "refresh_seconds": None if final else settings.STATUS_PAGE_REFRESH_SECONDS,
        "payment_url": payment.payment_url if payment else "",
        "codes": [unit["code"] for item in data["items"] for unit in item["units"] if unit["code"]],
    }
    context["codes_text"] = "\n".join(context["codes"])
    context["held"] = order.status == OrderStatus.PAID and _units_held(order)
    return render(request, "orders/status.html", context)


def _units_held(order) -> bool:
    """Whether a unit of `order` waits on a paused product or a halted provider (a few tiny tables)."""
    halted = set(ProviderHalt.objects.values_list("provider", flat=True))
    paused = set(ProductPause.objects.values_list("provider", "sku"))
    if not halted and not paused:
        return False
    units = Delivery.objects.filter(order=order, status__in=OPEN_STATUSES).select_related("item")
    for unit in units.only("provider", "item__provider", "item__sku"):
        provider = unit.provider or unit.item.provider or settings.FULFILLMENT_PROVIDER
        if provider in halted or (provider, unit.item.sku) in paused:
            return True
    return False


@never_cache
@require_http_methods(["GET", "POST"])
def sandbox_pay_page(request, payment_id: str):
    """The sandbox's payment form (TBANK_SANDBOX only): Pay or Decline."""
    if not (settings.TBANK_SANDBOX and settings.DEBUG):
        raise Http404("The T-Bank sandbox is off.")
    payment = SandboxPayment.objects.filter(payment_id=payment_id).first()
    if payment is None:
        raise Http404("No such sandbox payment.")
    if request.method == "POST":
        target = sandbox_payment_decide(payment_id=payment.payment_id, pay=request.POST.get("action") == "pay")
        return HttpResponseRedirect(target or "/")
    return render(
        request,
        "orders/sandbox_pay.html",
        {"payment": payment, "amount_text": money(payment.amount_kopecks), "payable": payment.status == "NEW"},
    )


@never_cache
@require_POST
def order_pay_again_page(request, public_id: str):
    """POST /orders/<id>/pay-again (token in the form): a new payment link for a declined or expired
    order, the same one on a repeat; back to the status page with the reason when none can be had."""
    order = order_for_customer(public_id=public_id, token=request.POST.get("token", ""))
    if order is None:
        raise Http404("No order with this id and token.")
    lang = request.POST.get("lang", "")
    if lang in LANGUAGE_CODES:
        translation.activate(lang)
    try:
        payment = order_payment_again(order_id=order.pk)
    except PaymentUnavailable as exc:
        logger.warning("Order %s: no new payment link: %s", order.public_id, exc)
        messages.error(request, _("The payment could not be started: %(why)s Try again in a minute.") % {"why": exc})
        payment = None
    if payment is not None and payment.payment_url and payment.bank_status in ("", "NEW", "FORM_SHOWED"):
        return HttpResponseRedirect(payment.payment_url)
    return HttpResponseRedirect(order_status_path(order, lang=lang if lang in LANGUAGE_CODES else ""))
