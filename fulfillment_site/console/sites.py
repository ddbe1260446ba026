"""The admin site of the staff console: a dashboard that opens with problems, a banner on every
page while a provider is halted, and a compact top menu instead of the wide side menu."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import path
from django.utils.translation import gettext_lazy as _

from fulfillment.models import ProviderAccount, ProviderHalt
from fulfillment.services import deposit_shortfalls
from fulfillment_site.console.banner import active_halts
from fulfillment_site.console.formatting import provider_amount
from fulfillment_site.console.margin_view import margin_page, today_margin
from fulfillment_site.console.problems import problems_count

#: The lists staff open every day, in this order, first in the menu; the rest go under "More".
MENU_FIRST = (
    "orders.order",
    "orders.refund",
    "fulfillment.delivery",
    "orders.paymentnotification",
    "fulfillment.orderflag",
    "fulfillment.providerhalt",
    "fulfillment.productpause",
    "orders.product",
)


def staff_menu(available_apps: list[dict]) -> dict:
    """The header menu: the daily lists first (MENU_FIRST order), every other list under "More"."""
    models = {}
    for app in available_apps:
        for model in app["models"]:
            if model.get("admin_url"):
                models[f"{app['app_label']}.{model['object_name'].lower()}"] = model
    first = [models.pop(key) for key in MENU_FIRST if key in models]
    return {"first": first, "more": sorted(models.values(), key=lambda model: str(model["name"]))}


class StaffAdminSite(admin.AdminSite):
    site_header = _("Fulfillment staff console")
    site_title = _("Fulfillment staff")
    index_title = _("Problems first")
    index_template = "console/index.html"
    # The side menu takes a fifth of a 1366 px screen on every page; the top menu replaces it.
    enable_nav_sidebar = False

    def each_context(self, request):
        context = super().each_context(request)
        halts = []
        if request.user.is_active and request.user.is_staff:
            # The dashboard reads the halts first (its halt tile); the banner reuses them.
            halts = getattr(request, "console_halts", None)
            halts = active_halts() if halts is None else halts
        context["provider_halts"] = halts
        context["menu"] = staff_menu(context.get("available_apps") or [])
        return context

    def get_urls(self):
        urls = super().get_urls()
        margin = path("margin/", self.admin_view(lambda request: margin_page(request, self)), name="margin")
        return [margin, *urls]

    def index(self, request, extra_context=None):
        problems = problems_count()
        halts = request.console_halts = active_halts()
        threshold = settings.PROVIDER_BALANCE_ALERT
        accounts = [
            {
                "provider": account.provider,
                "balance": provider_amount(account.balance),
                "low": threshold is not None and account.balance is not None and account.balance < threshold,
                "checked_at": account.balance_checked_at,
            }
            for account in ProviderAccount.objects.order_by("provider")
        ]
        extra_context = {
            **(extra_context or {}),
            "problems": problems,
            "deposit_shortfalls": _deposit_shortfalls(halts),
            "problems_total": sum(1 for problem in problems if problem.count),
            "provider_accounts": accounts,
            "balance_alert": None if threshold is None else provider_amount(threshold),
            "today_margin": today_margin(),
        }
        return super().index(request, extra_context)


def _deposit_shortfalls(halts: list[dict]) -> list[dict]:
    """The halt tile's lines for each provider halted for its deposit: the balance seen, what the
    held units cost, and how much more the deposit needs."""
    # Only a halt for the deposit costs queries.
    rows = [ProviderHalt(provider=halt["provider"], code=halt["code"]) for halt in halts]
    return [
        {
            "provider": shortfall.provider,
            "balance": provider_amount(shortfall.balance),
            "held_units": shortfall.held_units,
            "held_cost": provider_amount(shortfall.held_cost),
            "held_unknown": shortfall.held_unknown,
            "needed": provider_amount(shortfall.needed),
        }
        for shortfall in deposit_shortfalls(halts=rows)
    ]
