"""Admin for refunds: the refunds list (amount in roubles, state, every bank answer), the
refunds inline and the money balance on the order page, and the "Refund undelivered units"
action (its own permission, a confirmation page with the amount first).

Kept apart from orders/admin.py, which registers it with `extend_order_admin(OrderAdmin)`.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from fulfillment.admin import ReadOnlyAdminMixin
from fulfillment.models import OPEN_STATUSES, Delivery, DeliveryStatus
from fulfillment_site.console.formatting import rubles
from orders.models import Order, Refund, RefundAttempt
from orders.refund_state import RefundState
from orders.services.refunds import (
    RefundNotPossible,
    order_money_balance,
    refund_decide_undelivered,
    refund_resend,
    undelivered_units_preview,
)
from orders.state import OrderStatus

PERMISSION = "orders.refund_undelivered_units"


class NeedsStaffFilter(admin.SimpleListFilter):
    title = _("needs staff")
    parameter_name = "needs_staff"

    def lookups(self, request, model_admin):
        return [
            ("failed", _("Failed (the bank refused)")),
            ("unknown", _("Outcome unknown (checking with GetState)")),
            ("open", _("Not settled yet")),
        ]

    def queryset(self, request, queryset):
        if self.value() == "failed":
            return queryset.filter(state=RefundState.FAILED)
        if self.value() == "unknown":
            return queryset.filter(state=RefundState.CHECKING)
        if self.value() == "open":
            return queryset.exclude(state__in=(RefundState.SUCCEEDED, RefundState.FAILED))
        return queryset


class RefundAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = RefundAttempt
    # What staff read: when, what was asked, what the bank said. The raw request and answer are
    # on record (audit) but not dumped on the page.
    fields = ("started_at", "method", "outcome", "error_code", "message", "duration_ms")
    readonly_fields = fields
    extra = 0


@admin.action(description=_("Send selected failed refunds again"), permissions=["refund_undelivered_units"])
def resend_refunds(modeladmin, request, queryset) -> None:
    for refund_id in queryset.values_list("pk", flat=True):
        try:
            refund = refund_resend(refund_id=refund_id, user=request.user)
        except RefundNotPossible as exc:
            modeladmin.message_user(request, str(exc), messages.WARNING)
            continue
        values = {"id": refund.pk, "state": refund.get_state_display()}
        modeladmin.message_user(request, _("Refund %(id)s queued again (%(state)s).") % values)
        modeladmin.log_change(request, refund, _("Sent refund %(id)s again (%(state)s).") % values)


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "order_link",
        "payment_id_display",
        "reason",
        "amount",
        "state",
        "decided_by",
        "cancel_calls",
        "bank_answer",
        "created_at",
        "settled_at",
    )
    list_filter = (NeedsStaffFilter, "state", "reason")
    search_fields = ("=order__id", "=order__public_id", "=payment__payment_id", "=external_request_id")
    list_select_related = ("payment", "order")
    inlines = [RefundAttemptInline]
    actions = [resend_refunds]
    readonly_fields = [f.name for f in Refund._meta.fields] + ["amount", "order_link"]
    # The refund's page says what a person needs first: how much, for which order, why, where it
    # stands and what the bank said; the machinery (claims, ids, the receipt) is folded away.
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "order_link",
                    "amount",
                    "reason",
                    "state",
                    "decided_by",
                    "full",
                    "bank_status",
                    "last_error_code",
                    "last_message",
                    "created_at",
                    "sent_at",
                    "settled_at",
                )
            },
        ),
        (
            _("Technical details"),
            {
                "classes": ("collapse",),
                "fields": (
                    "payment",
                    "external_request_id",
                    "cancel_calls",
                    "state_checks",
                    "queued_at",
                    "next_check_at",
                    "receipt",
                ),
            },
        ),
    )

    def has_refund_undelivered_units_permission(self, request) -> bool:
        return request.user.has_perm(PERMISSION)

    @admin.display(description=_("Order"), ordering="order_id")
    def order_link(self, obj: Refund) -> str:
        return format_html('<a class="mono" href="../order/{}/change/">{}</a>', obj.order_id, obj.order.public_id)

    @admin.display(description=_("PaymentId"))
    def payment_id_display(self, obj: Refund) -> str:
        return obj.payment.payment_id

    @admin.display(description=_("Amount"), ordering="amount_kopecks")
    def amount(self, obj: Refund) -> str:
        return rubles(obj.amount_kopecks)

    @admin.display(description=_("Bank's last answer"))
    def bank_answer(self, obj: Refund) -> str:
        parts = [part for part in (obj.bank_status, obj.last_error_code and f"code {obj.last_error_code}") if part]
        return " ".join(parts + [obj.last_message])


class RefundInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Refund
    fields = ("id", "amount", "reason", "state", "decided_by", "bank_status", "last_message", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True

    @admin.display(description=_("Amount"))
    def amount(self, obj: Refund) -> str:
        return rubles(obj.amount_kopecks)


class AwaitingRefundFilter(admin.SimpleListFilter):
    title = _("undelivered units")
    parameter_name = "undelivered"

    def lookups(self, request, model_admin):
        return [("waiting_for_staff", _("Waiting for staff to refund"))]

    def queryset(self, request, queryset):
        if self.value() != "waiting_for_staff":
            return queryset
        units = Delivery.objects.filter(order=OuterRef("pk"))
        return queryset.filter(
            Exists(units.filter(status=DeliveryStatus.FAILED, refund__isnull=True)), status=OrderStatus.PAID
        ).exclude(Exists(units.filter(status__in=OPEN_STATUSES)))


@admin.display(description=_("Money balance"))
def money_balance(modeladmin, obj: Order) -> str:
    if obj is None or obj.pk is None:
        return "-"
    balance = order_money_balance(order_id=obj.pk)
    text = _(
        "paid %(paid)s; delivered %(delivered)s; refunded %(refunded)s (being refunded %(refunding)s); "
        "outstanding %(outstanding)s"
    ) % {
        "paid": rubles(balance.paid),
        "delivered": rubles(balance.delivered),
        "refunded": rubles(balance.refunded),
        "refunding": rubles(balance.refunding),
        "outstanding": rubles(balance.outstanding),
    }
    if balance.extra_paid:
        text += _("; paid twice: %(extra)s, of it refunded %(extra_refunded)s") % {
            "extra": rubles(balance.extra_paid),
            "extra_refunded": rubles(balance.extra_refunded),
        }
    if not balance.ledger_ok:
        text += _(
            "; LEDGER BROKEN: delivered + being delivered (%(delivering)s) + refunds made or in flight exceed what "
            "was paid (see the order's flags)"
        ) % {"delivering": rubles(balance.delivering)}
    return text


@admin.action(description=_("Refund undelivered units"), permissions=["refund_undelivered_units"])
def refund_undelivered_units(modeladmin, request, queryset):
    """Show what would be refunded (the amount first); refund on confirmation."""
    include_unknown = request.POST.get("include_unknown") == "1"
    include_held = request.POST.get("include_held") == "1"
    order_ids = list(queryset.order_by("pk").values_list("pk", flat=True))
    if request.POST.get("confirm"):
        for order_id in order_ids:
            try:
                refund = refund_decide_undelivered(
                    order_id=order_id,
                    decided_by=request.user.get_username(),
                    user=request.user,
                    include_unknown=include_unknown,
                    include_held=include_held,
                    reason="staff",
                )
            except RefundNotPossible as exc:
                modeladmin.message_user(request, str(exc), messages.WARNING)
                continue
            if refund is None:
                order = Order.objects.get(pk=order_id)
                modeladmin.message_user(
                    request, _("%(order)s: nothing to refund.") % {"order": order}, messages.WARNING
                )
            else:
                values = {"id": refund.pk, "amount": rubles(refund.amount_kopecks), "order": refund.order}
                # The order's admin history says who added which refund (Django words it, in the reader's
                # language); the timeline shows the refund itself once, with who decided it.
                added = [{"added": {"name": "refund", "object": f"{refund.pk}: {rubles(refund.amount_kopecks)}"}}]
                modeladmin.log_change(request, refund.order, added)
                modeladmin.message_user(
                    request, _("%(order)s: refund %(id)s of %(amount)s is being sent.") % values, messages.SUCCESS
                )
        return None
    previews = [
        undelivered_units_preview(order_id=pk, include_unknown=include_unknown, include_held=include_held)
        for pk in order_ids
    ]
    numbers = dict(Order.objects.filter(pk__in=order_ids).values_list("pk", "public_id"))
    for preview in previews:
        preview.amount_roubles = rubles(preview.amount_kopecks)
        preview.order_number = numbers.get(preview.order_id, preview.order_id)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Refund undelivered units"),
        "previews": previews,
        "any_unknown": any(preview.unknown or (include_unknown and preview.units) for preview in previews),
        "include_unknown": include_unknown,
        "include_held": include_held,
        "any_waiting_held": any(preview.waiting_held for preview in previews),
        "total_roubles": rubles(sum(preview.amount_kopecks for preview in previews)),
        # No button offers to refund nothing: with no unit to refund, only "Cancel" is left.
        "any_refundable": any(preview.amount_kopecks > 0 for preview in previews),
        "any_unknown_refundable": any(preview.unknown for preview in previews),
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "admin/orders/refund_undelivered_confirmation.html", context)


def extend_order_admin(order_admin: type[admin.ModelAdmin]) -> None:
    """Add the refund pieces to the order admin: inline, balance, action and filter."""
    order_admin.inlines = [*order_admin.inlines, RefundInline]
    order_admin.actions = [*order_admin.actions, refund_undelivered_units]
    order_admin.list_filter = (*order_admin.list_filter, AwaitingRefundFilter)
    order_admin.money_balance = money_balance
    order_admin.readonly_fields = (*order_admin.readonly_fields, "money_balance")
    if order_admin.fields is not None:
        order_admin.fields = (*order_admin.fields, "money_balance")
    order_admin.has_refund_undelivered_units_permission = lambda self, request: request.user.has_perm(PERMISSION)


__all__ = ["extend_order_admin"]
