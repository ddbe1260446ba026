"""The problems staff must see first: one list of definitions, each a cheap count, the filtered
list that shows it, and what to do.

The dashboard panel, the staff alert emails and the /metrics gauges all read this list, so a new
kind of problem is one `register(Problem(...))` (refunds that failed, units contradicted by a
callback...). Every count must stay cheap on millions of rows: it runs on every dashboard view,
every alert run and every scrape, so it reads an index (usually a partial one) of the few rows
that are problems, never the whole table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fulfillment.models import (
    Delivery,
    DeliveryStatus,
    OrderFlag,
    PauseKind,
    ProductPause,
    ProviderAccount,
    ProviderHalt,
)
from fulfillment.selectors import units_awaiting_price_decision
from orders.models import NotificationVerdict, Order, PaymentNotification, PriceRule, Refund
from orders.refund_state import OPEN, RefundState
from orders.services.pricing import exchange_rate_in_use, products_below_margin
from orders.state import OrderStatus


@dataclass(frozen=True)
class Problem:
    key: str  # stable id: alert bookkeeping, metric label, URL parameters
    title: str  # "Units failed, waiting for staff"
    count: Callable[[], int]
    url: Callable[[], str]  # the admin list showing exactly these
    hint: str = ""  # what staff do about it
    details: Callable[[], list[str]] = field(default=lambda: [])  # lines for the alert email


@dataclass(frozen=True)
class ProblemCount:
    problem: Problem
    count: int

    @property
    def key(self) -> str:
        return self.problem.key

    @property
    def title(self) -> str:
        return self.problem.title

    @property
    def url(self) -> str:
        return self.problem.url()

    @property
    def hint(self) -> str:
        return self.problem.hint


PROBLEMS: list[Problem] = []


def register(problem: Problem) -> Problem:
    """Add a kind of problem (or replace the one with the same key), keeping the panel's order."""
    for index, existing in enumerate(PROBLEMS):
        if existing.key == problem.key:
            PROBLEMS[index] = problem
            return problem
    PROBLEMS.append(problem)
    return problem


#: The dashboard's order: what stops money or every delivery first, then what one order needs, then
#: what only wants watching. Problems not named here follow in the order they were registered.
URGENCY = (
    "provider_halts",
    "refunds_failed",
    "failed_units",
    "orders_flagged",
    "notifications_to_review",
    "paid_too_long",
    "price_decisions",
    "product_pauses",
    "products_repricing",
    "refunds_waiting",
    "low_balance",
    "exchange_rate_stale",
    "below_margin",
)


def _urgency(problem: Problem) -> int:
    return URGENCY.index(problem.key) if problem.key in URGENCY else len(URGENCY)


def problems_count() -> list[ProblemCount]:
    """Every registered problem with its current count (one cheap query each), most urgent first."""
    return [ProblemCount(problem, problem.count()) for problem in sorted(PROBLEMS, key=_urgency)]


def paid_too_long_cutoff():
    return timezone.now() - timedelta(minutes=settings.ORDER_PAID_TOO_LONG_MINUTES)


# --- the problems known today ----------------------------------------------------------------


def _failed_units():
    # FAILED units of orders that are still PAID: a refunded order's failed unit needs nobody.
    return Delivery.objects.filter(status=DeliveryStatus.FAILED, order__status=OrderStatus.PAID)


def _paid_too_long():
    return Order.objects.filter(status=OrderStatus.PAID, paid_at__lt=paid_too_long_cutoff())


def _notifications_to_review():
    return PaymentNotification.objects.filter(verdict=NotificationVerdict.NEEDS_REVIEW, reviewed_at__isnull=True)


def _halts():
    return ProviderHalt.objects.order_by("provider")


def low_balances():
    """ProviderAccounts whose last known balance is under PROVIDER_BALANCE_ALERT (none when unset)."""
    threshold = settings.PROVIDER_BALANCE_ALERT
    if threshold is None:
        return ProviderAccount.objects.none()
    return ProviderAccount.objects.filter(balance__lt=threshold).order_by("provider")


def _orders_url(attention: str) -> Callable[[], str]:
    return lambda: f"{reverse('admin:orders_order_changelist')}?attention={attention}"


register(
    Problem(
        key="failed_units",
        title=_("Units failed, waiting for staff"),
        count=lambda: _failed_units().count(),
        url=_orders_url("failed_units"),
        hint=_(
            "Fix the cause (recipient, product, provider), then Retry on the order page; or give the money back "
            "with Refund undelivered units."
        ),
    )
)
register(
    Problem(
        key="paid_too_long",
        title=_("Orders paid but not delivered for too long"),
        count=lambda: _paid_too_long().count(),
        url=_orders_url("paid_too_long"),
        hint=_("Paid more than ORDER_PAID_TOO_LONG_MINUTES ago and still not fulfilled: open the order's timeline."),
    )
)
register(
    Problem(
        key="notifications_to_review",
        title=_("Payment notifications needing review"),
        count=lambda: _notifications_to_review().count(),
        url=lambda: f"{reverse('admin:orders_paymentnotification_changelist')}?review=pending",
        hint=_("A partial refund made in the T-Bank portal: check which units it covers, then mark it reviewed."),
    )
)
register(
    Problem(
        key="provider_halts",
        title=_("Providers halted"),
        count=lambda: _halts().count(),
        url=lambda: reverse("admin:fulfillment_providerhalt_changelist"),
        hint=_("Every delivery through a halted provider waits: fix what the halt says, then lift it."),
        details=lambda: [f"{halt.provider}: {halt.reason}" for halt in _halts()],
    )
)
register(
    Problem(
        key="low_balance",
        title=_("Provider balances under the alert threshold"),
        count=lambda: low_balances().count(),
        url=lambda: reverse("admin:fulfillment_provideraccount_changelist"),
        hint=_("Top up the deposit at the provider before purchases start failing."),
        details=lambda: [
            f"{account.provider}: {account.balance:,} (alert under {settings.PROVIDER_BALANCE_ALERT:,})"
            for account in low_balances()
        ],
    )
)


def _refunds_refused():
    return Refund.objects.filter(state=RefundState.FAILED)


def _refunds_stuck():
    cutoff = timezone.now() - timedelta(minutes=settings.ORDER_PAID_TOO_LONG_MINUTES)
    return Refund.objects.filter(state__in=OPEN, created_at__lt=cutoff)


register(
    Problem(
        key="refunds_failed",
        title=_("Refunds refused by the bank"),
        count=lambda: _refunds_refused().count(),
        url=lambda: f"{reverse('admin:orders_refund_changelist')}?needs_staff=failed",
        hint=_("Read the bank's answer on the refund, fix the cause (e.g. the merchant balance), then send it again."),
        details=lambda: [
            f"refund {refund.pk} of order {refund.order_id}: {refund.last_message}"
            for refund in _refunds_refused().order_by("-id")[:20]
        ],
    )
)
register(
    Problem(
        key="refunds_waiting",
        title=_("Refunds not settled for too long"),
        count=lambda: _refunds_stuck().count(),
        url=lambda: f"{reverse('admin:orders_refund_changelist')}?needs_staff=open",
        hint=_(
            "Decided or sent longer ago than ORDER_PAID_TOO_LONG_MINUTES: is a worker running, is T-Bank reachable?"
        ),
    )
)


def _open_flags():
    return OrderFlag.objects.filter(resolved_at__isnull=True)


def _product_pauses():
    return ProductPause.objects.filter(kind=PauseKind.FAULT).order_by("provider", "sku")


def _repricing_pauses():
    return ProductPause.objects.filter(kind=PauseKind.REPRICING).order_by("provider", "sku")


register(
    Problem(
        key="orders_flagged",
        title=_("Orders flagged for staff"),
        count=lambda: _open_flags().count(),
        url=_orders_url("flagged"),
        hint=_("A provider contradicted a delivery, or a paid order has nothing to deliver: check, then resolve."),
        details=lambda: [f"order {flag.order_id}: {flag.reason}" for flag in _open_flags().order_by("-id")[:20]],
    )
)
register(
    Problem(
        key="product_pauses",
        title=_("Products paused at their provider"),
        count=lambda: _product_pauses().count(),
        url=lambda: reverse("admin:fulfillment_productpause_changelist"),
        hint=_("Their units wait (no attempt used) and resume once a probe purchase goes through."),
        details=lambda: [f"{pause.provider} {pause.sku}: {pause.reason}" for pause in _product_pauses()[:20]],
    )
)
register(
    Problem(
        key="products_repricing",
        title=_("Products paused for repricing"),
        count=lambda: _repricing_pauses().count(),
        url=lambda: reverse("admin:fulfillment_productpause_changelist") + "?kind__exact=repricing",
        hint=_(
            "The supplier refused a purchase for price: the product is off sale and its units wait (nothing "
            "refunded) until the next price-list sync prices it again."
        ),
        details=lambda: [f"{pause.provider} {pause.sku}: {pause.reason}" for pause in _repricing_pauses()[:20]],
    )
)
register(
    Problem(
        key="price_decisions",
        title=_("Units waiting for a price decision"),
        count=lambda: units_awaiting_price_decision().count(),
        url=lambda: reverse("admin:fulfillment_delivery_changelist") + "?price_decision=waiting",
        hint=_(
            "Sold before the supplier raised its price: buy them at the new price (the units list's action), or "
            "refund them (the order's Refund undelivered units)."
        ),
    )
)


def _rate_problem() -> str:
    """Why prices are not following costs (no usable exchange rate), when price rules are in use."""
    if not PriceRule.objects.filter(is_active=True).exists():
        return ""
    return exchange_rate_in_use().problem


register(
    Problem(
        key="exchange_rate_stale",
        title=_("Prices not following costs: no fresh exchange rate"),
        count=lambda: 1 if _rate_problem() else 0,
        url=lambda: reverse("admin:orders_exchangerate_changelist"),
        hint=_(
            "Prices stay as they are until a fresh rate arrives. Check that the worker can reach the Central "
            "Bank (CBR_DAILY_URL), or set PRICING_FIXED_RATE."
        ),
        details=lambda: [_rate_problem()] if _rate_problem() else [],
    )
)


register(
    Problem(
        key="below_margin",
        title=_("Products selling below their minimum margin"),
        count=lambda: len(products_below_margin()),
        url=lambda: reverse("admin:orders_product_changelist") + "?manual_price=below_margin",
        hint=_(
            "Their manual price is under cost plus the minimum margin: raise it, or clear it so that the "
            "rules price them."
        ),
        details=lambda: [
            f"{name}: {price / 100:.2f} < {floor / 100:.2f}" for _pk, name, price, floor in products_below_margin()[:20]
        ],
    )
)
