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
    title = "needs staff"
    parameter_name = "needs_staff"

    def lookups(self, request, model_admin):
        return [
            ("failed", "Failed (the bank refused)"),
            ("unknown", "Outcome unknown (checking with GetState)"),
            ("open", "Not settled yet"),
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
    fields = ("started_at", "method", "outcome", "error_code", "message", "request", "answer", "duration_ms", "worker")
    readonly_fields = fields
    extra = 0


@admin.action(description="Send selected failed refunds again", permissions=["refund_undelivered_units"])
def resend_refunds(modeladmin, request, queryset) -> None:
    for refund_id in queryset.values_list("pk", flat=True):
        try:
            refund = refund_resend(refund_id=refund_id, user=request.user)
        except RefundNotPossible as exc:
            modeladmin.message_user(request, str(exc), messages.WARNING)
            continue
        modeladmin.message_user(request, f"Refund {refund.pk} queued again ({refund.get_state_display()}).")
        modeladmin.log_change(request, refund, f"Sent refund {refund.pk} again ({refund.get_state_display()}).")


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
    list_select_related = ("payment",)
    inlines = [RefundAttemptInline]
    actions = [resend_refunds]
    readonly_fields = [f.name for f in Refund._meta.fields] + ["amount"]

    def has_refund_undelivered_units_permission(self, request) -> bool:
        return request.user.has_perm(PERMISSION)

    @admin.display(description="Order", ordering="order_id")
    def order_link(self, obj: Refund) -> str:
        return format_html('<a href="../order/{}/change/">{}</a>', obj.order_id, obj.order_id)

    @admin.display(description="PaymentId")
    def payment_id_display(self, obj: Refund) -> str:
        return obj.payment.payment_id

    @admin.display(description="Amount", ordering="amount_kopecks")
    def amount(self, obj: Refund) -> str:
        return rubles(obj.amount_kopecks)

    @admin.display(description="Bank's last answer")
    def bank_answer(self, obj: Refund) -> str:
        parts = [part for part in (obj.bank_status, obj.last_error_code and f"code {obj.last_error_code}") if part]
        return " ".join(parts + [obj.last_message])


class RefundInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Refund
    fields = ("id", "amount", "reason", "state", "decided_by", "bank_status", "last_message", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True

    @admin.display(description="Amount")
    def amount(self, obj: Refund) -> str:
        return rubles(obj.amount_kopecks)


class AwaitingRefundFilter(admin.SimpleListFilter):
    title = "undelivered units"
    parameter_name = "undelivered"

    def lookups(self, request, model_admin):
        return [("waiting_for_staff", "Waiting for staff to refund")]

    def queryset(self, request, queryset):
        if self.value() != "waiting_for_staff":
            return queryset
        units = Delivery.objects.filter(order=OuterRef("pk"))
        return queryset.filter(
            Exists(units.filter(status=DeliveryStatus.FAILED, refund__isnull=True)), status=OrderStatus.PAID
        ).exclude(Exists(units.filter(status__in=OPEN_STATUSES)))


@admin.display(description="Money balance")
def money_balance(modeladmin, obj: Order) -> str:
    if obj is None or obj.pk is None:
        return "-"
    balance = order_money_balance(order_id=obj.pk)
    text = (
        f"paid {rubles(balance.paid)}; delivered {rubles(balance.delivered)}; refunded {rubles(balance.refunded)}"
        f" (being refunded {rubles(balance.refunding)}); outstanding {rubles(balance.outstanding)}"
    )
    if balance.extra_paid:
        text += f"; paid twice: {rubles(balance.extra_paid)}, of it refunded {rubles(balance.extra_refunded)}"
    if not balance.ledger_ok:
        text += (
            f"; LEDGER BROKEN: delivered + being delivered ({rubles(balance.delivering)}) + refunds made or in flight "
            "exceed what was paid (see the order's flags)"
        )
    return text


@admin.action(description="Refund undelivered units", permissions=["refund_undelivered_units"])
def refund_undelivered_units(modeladmin, request, queryset):
    """Show what would be refunded (the amount first); refund on confirmation."""
    include_unknown = request.POST.get("include_unknown") == "1"
    order_ids = list(queryset.order_by("pk").values_list("pk", flat=True))
    if request.POST.get("confirm"):
        for order_id in order_ids:
            try:
                refund = refund_decide_undelivered(
                    order_id=order_id,
                    decided_by=request.user.get_username(),
                    user=request.user,
                    include_unknown=include_unknown,
                    reason="staff",
                )
            except RefundNotPossible as exc:
                modeladmin.message_user(request, str(exc), messages.WARNING)
                continue
            if refund is None:
                modeladmin.message_user(request, f"Order {order_id}: nothing to refund.", messages.WARNING)
            else:
                done = f"Refund {refund.pk} of {rubles(refund.amount_kopecks)} decided for undelivered units."
                modeladmin.log_change(request, refund.order, done)  # the order's admin history and timeline
                modeladmin.message_user(
                    request,
                    f"Order {order_id}: refund {refund.pk} of {rubles(refund.amount_kopecks)} is being sent.",
                    messages.SUCCESS,
                )
        return None
    previews = [undelivered_units_preview(order_id=pk, include_unknown=include_unknown) for pk in order_ids]
    for preview in previews:
        preview.amount_roubles = rubles(preview.amount_kopecks)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Refund undelivered units",
        "previews": previews,
        "any_unknown": any(preview.unknown or (include_unknown and preview.units) for preview in previews),
        "include_unknown": include_unknown,
        "total_roubles": rubles(sum(preview.amount_kopecks for preview in previews)),
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
