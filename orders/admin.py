"""Admin for orders and payment notifications (products: orders/admin_catalogue.py).

Statuses are read-only here: they change through payments, deliveries and the Retry button,
never by editing a field. Lists stay fast on millions of rows: exact indexed search
(fulfillment_site.console: search, pagination), filters with fixed choices.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Exists, IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from fulfillment.admin import FlagInline, ReadOnlyAdminMixin, retry_fulfillment, retry_messages
from fulfillment.models import Delivery, DeliveryStatus, OrderFlag
from fulfillment.selectors import units_held_back
from fulfillment.services import OrderNotFound, OrderNotFulfillable, order_fulfillment_retry
from fulfillment_site.console.formatting import rubles_html, timestamp
from fulfillment_site.console.order_page import order_page_context, order_status_badge
from fulfillment_site.console.pagination import HugeTableAdminMixin
from fulfillment_site.console.problems import paid_too_long_cutoff
from fulfillment_site.console.search import SEARCH_CAP, ExactSearchMixin, as_id, order_ids_for
from orders.admin_refunds import extend_order_admin
from orders.models import (
    REJECTED_VERDICTS,
    CustomerEmail,
    NotificationVerdict,
    Order,
    OrderItem,
    Payment,
    PaymentNotification,
    TBankCall,
)
from orders.services import NotificationNotReviewable, payment_notification_mark_reviewed
from orders.services.corrections import RecipientNotCorrectable, order_item_recipient_correct
from orders.services.emails import customer_email_enqueue
from orders.state import OrderStatus
from orders.tbank import notifications as tbank_statuses


def _units_annotations() -> dict:
    units_total = (
        OrderItem.objects.filter(order=OuterRef("pk")).values("order").annotate(total=Sum("quantity")).values("total")
    )

    def units_in(status: str):
        return (
            Delivery.objects.filter(order=OuterRef("pk"), status=status)
            .values("order")
            .annotate(n=Count("id"))
            .values("n")
        )

    return {
        "units_total": Coalesce(Subquery(units_total, output_field=IntegerField()), 0),
        "units_delivered": Coalesce(Subquery(units_in(DeliveryStatus.DELIVERED), output_field=IntegerField()), 0),
        "units_failed": Coalesce(Subquery(units_in(DeliveryStatus.FAILED), output_field=IntegerField()), 0),
    }


def orders_needing_attention(kind: str):
    """Ids (a subquery) of orders behind a problem: PAID with a failed unit, PAID for too long, or
    with a notification to review; "any" is their union. Each starts from a small indexed set
    (partial or covering indexes), never from the million orders."""
    if kind == "failed_units":
        units = Delivery.objects.filter(status=DeliveryStatus.FAILED, order__status=OrderStatus.PAID)
        return units.order_by().values("order_id")
    if kind == "paid_too_long":
        return Order.objects.filter(status=OrderStatus.PAID, paid_at__lt=paid_too_long_cutoff()).order_by().values("id")
    if kind == "to_review":
        records = PaymentNotification.objects.filter(
            verdict=NotificationVerdict.NEEDS_REVIEW, reviewed_at__isnull=True, order__isnull=False
        )
        return records.order_by().values("order_id")
    if kind == "flagged":
        return OrderFlag.objects.filter(resolved_at__isnull=True).order_by().values("order_id")
    if kind == "held":
        return _held_units().order_by().values("order_id")
    kinds = ("failed_units", "paid_too_long", "to_review", "flagged", "held")
    first, *others = (orders_needing_attention(each) for each in kinds)
    return first.union(*others)


def _held_units():
    """Waiting units of PAID orders held back by a fault that is not theirs: a paused product (its
    own SKU or the backup it was routed to) or a halted provider."""
    return units_held_back().filter(order__status=OrderStatus.PAID)


def _has_failed_unit():
    return Exists(Delivery.objects.filter(order=OuterRef("pk"), status=DeliveryStatus.FAILED))


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = _("needs attention")
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [
            ("any", _("Any problem")),
            ("failed_units", _("A unit failed")),
            ("paid_too_long", _("Paid, not delivered for too long")),
            ("to_review", _("A notification to review")),
            ("flagged", _("Flagged (a provider contradicted a delivery...)")),
            ("held", _("Held by a paused product or a halted provider")),
        ]

    def queryset(self, request, queryset):
        if self.value() == "failed_units":
            # Walks PAID orders newest first, probing (order, status): the page stops at 100.
            return queryset.filter(_has_failed_unit(), status=OrderStatus.PAID)
        if self.value() == "paid_too_long":
            return queryset.filter(status=OrderStatus.PAID, paid_at__lt=paid_too_long_cutoff())
        if self.value() in {"any", "to_review", "flagged", "held"}:
            return queryset.filter(pk__in=orders_needing_attention(self.value()))
        return queryset


class PaymentInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Payment
    fields = ("payment_id", "amount", "refunded", "bank_status", "created_at", "captured_at", "last_polled_at")
    readonly_fields = fields
    extra = 0

    @admin.display(description=_("Amount"))
    def amount(self, obj: Payment):
        return rubles_html(obj.amount_kopecks)

    @admin.display(description=_("Refunded"))
    def refunded(self, obj: Payment):
        return rubles_html(obj.refunded_kopecks)


class TBankCallInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TBankCall
    fields = ("created_at", "method", "outcome", "payment_id", "error")
    readonly_fields = fields
    extra = 0


class CustomerEmailInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = CustomerEmail
    fields = ("kind", "event", "send_no", "to", "state", "attempts", "last_error", "requested_by", "sent_at")
    readonly_fields = fields
    extra = 0


@admin.action(description=_("Send the codes email again"), permissions=["resend_customer_email"])
def resend_codes_email(modeladmin, request, queryset) -> None:
    sent, skipped = [], []
    for order in queryset.only("pk", "status", "customer_email"):
        if order.status != OrderStatus.FULFILLED or not order.customer_email:
            why = _("no email") if not order.customer_email else order.get_status_display()
            skipped.append(f"{order.public_id} ({why})")
            continue
        with transaction.atomic():
            email = customer_email_enqueue(order_id=order.pk, kind="codes", requested_by=request.user.get_username())
            modeladmin.log_change(
                request, order, _("Queued the codes email again (send #%(no)d).") % {"no": email.send_no}
            )
        sent.append(order.public_id)
    if sent:
        modeladmin.message_user(
            request, _("Codes email queued again for %(orders)s.") % {"orders": ", ".join(sent)}, messages.SUCCESS
        )
    if skipped:
        modeladmin.message_user(
            request,
            _("Not sent (only fulfilled orders with an email have codes to send): %(orders)s.")
            % {"orders": ", ".join(skipped)},
            messages.WARNING,
        )


@admin.register(Order)
class OrderAdmin(HugeTableAdminMixin, ExactSearchMixin, admin.ModelAdmin):
    list_display = ("number", "status_badge", "amount", "customer_email", "units", "payment", "created", "paid")
    list_display_links = ("number",)
    list_filter = (NeedsAttentionFilter, "status", "created_at", "paid_at")
    # Only indexed columns: sorting a million rows by anything else is a full sort.
    sortable_by = ("number", "created", "paid")
    ordering = ("-id",)
    search_help_text = _(
        "Order number, customer email (or its beginning), PaymentId, recipient, or a provider reference — exact."
    )
    actions = [retry_fulfillment, resend_codes_email]
    change_form_template = "console/order_change_form.html"
    fields = ("customer_email",)
    inlines = [FlagInline, PaymentInline, TBankCallInline, CustomerEmailInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**_units_annotations())

    @admin.display(description=_("Order"), ordering="id")
    def number(self, obj: Order):
        # The public id: what the customer's page and emails call the order.
        return format_html('<span class="mono">{}</span>', obj.public_id)

    @admin.display(description=_("PaymentId"))
    def payment(self, obj: Order) -> str:
        return obj.payment_id or "—"

    @admin.display(description=_("Created"), ordering="created_at")
    def created(self, obj: Order) -> str:
        return timestamp(obj.created_at)

    @admin.display(description=_("Paid"), ordering="paid_at")
    def paid(self, obj: Order) -> str:
        return timestamp(obj.paid_at)

    def search_ids(self, word: str) -> set[int]:
        return order_ids_for(word)

    def has_add_permission(self, request) -> bool:
        # Orders come from the shop front with their items and a computed amount.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_retry_fulfillment_permission(self, request) -> bool:
        return request.user.has_perm("orders.retry_fulfillment")

    def has_resend_customer_email_permission(self, request) -> bool:
        return request.user.has_perm("orders.resend_customer_email")

    @admin.display(description=_("Status"), ordering="status")
    def status_badge(self, obj: Order):
        label, tone = order_status_badge(obj, units_failed=obj.units_failed)
        return format_html('<span class="badge {}">{}</span>', tone, label)

    @admin.display(description=_("Amount"))
    def amount(self, obj: Order):
        return rubles_html(obj.amount_kopecks)

    @admin.display(description=_("Units"))
    def units(self, obj: Order) -> str:
        text = f"{obj.units_delivered} / {obj.units_total}"
        if obj.units_failed:
            failed = _("%(count)d failed") % {"count": obj.units_failed}
            return format_html('{} <span class="badge bad">{}</span>', text, failed)
        return text

    # --- the order page ---------------------------------------------------------------------

    def get_urls(self):
        urls = super().get_urls()
        retry = path(
            "<path:object_id>/retry/",
            self.admin_site.admin_view(self.retry_view),
            name="orders_order_retry",
        )
        correct = path(
            "<path:object_id>/correct-recipient/",
            self.admin_site.admin_view(self.correct_recipient_view),
            name="orders_order_correct_recipient",
        )
        return [retry, correct, *urls]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        order = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if order is not None:
            extra.update(order_page_context(order))
            extra["can_retry"] = order.status == OrderStatus.PAID and self.has_retry_fulfillment_permission(request)
            extra["retry_url"] = reverse("admin:orders_order_retry", args=[order.pk])
            extra["can_correct"] = order.status == OrderStatus.PAID and self.has_correct_recipient_permission(request)
            extra["correct_url"] = reverse("admin:orders_order_correct_recipient", args=[order.pk])
            extra["can_refund"] = order.status == OrderStatus.PAID and request.user.has_perm(
                "orders.refund_undelivered_units"
            )
            extra["can_review"] = request.user.has_perm("orders.review_paymentnotification")
            extra["can_resolve"] = request.user.has_perm("fulfillment.change_orderflag")
            extra["can_buy_at_new_price"] = order.status == OrderStatus.PAID and request.user.has_perm(
                "fulfillment.buy_at_new_price"
            )
        return super().change_view(request, object_id, form_url, extra)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # One Save for the one editable field; no "save and add another" on a page that cannot add.
        context.update(show_save_and_continue=False, show_save_and_add_another=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def has_correct_recipient_permission(self, request) -> bool:
        # Changing what an order buys and buying it again: both permissions.
        return request.user.has_perm("orders.change_order") and self.has_retry_fulfillment_permission(request)

    def correct_recipient_view(self, request, object_id):
        """GET: the item's recipient in a form. POST: correct it (the old value kept in the admin
        history), then buy its failed units again under a new reference."""
        if not (self.has_view_permission(request) and self.has_correct_recipient_permission(request)):
            raise PermissionDenied
        order = get_object_or_404(Order, pk=as_id(object_id) or 0)
        order_url = reverse("admin:orders_order_change", args=[order.pk])
        item = get_object_or_404(
            OrderItem.objects.select_related("product"), pk=as_id(request.GET.get("item", "")) or 0, order=order
        )
        error = ""
        if request.method == "POST":
            try:
                change = order_item_recipient_correct(item_id=item.pk, recipient=request.POST.get("recipient", ""))
            except RecipientNotCorrectable as exc:
                error = str(exc)
            else:
                values = {"product": item.product.name, "old": change.old, "new": change.new}
                self.log_change(
                    request, order, _("Corrected the recipient of %(product)s: %(old)s → %(new)s.") % values
                )
                try:
                    decision = order_fulfillment_retry(order_id=order.pk)
                except (OrderNotFound, OrderNotFulfillable) as exc:
                    self.message_user(request, _("Nothing retried: %(why)s") % {"why": exc}, messages.ERROR)
                else:
                    self.message_user(
                        request,
                        _("%(order)s: recipient corrected to %(new)s; the failed units are bought again.")
                        % {"order": order, "new": change.new},
                        messages.SUCCESS,
                    )
                    retry_messages(self, request, [decision])
                return HttpResponseRedirect(order_url)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Correct the recipient of %(product)s") % {"product": item.product.name},
            "opts": self.opts,
            "order": order,
            "order_url": order_url,
            "item": item,
            "error": error,
            "value": request.POST.get("recipient", item.recipient),
        }
        return TemplateResponse(request, "console/order_correct_recipient.html", context)

    def retry_view(self, request, object_id):
        """GET: what a retry will do, with a confirm button. POST: retry, record it, show the outcome."""
        if not (self.has_view_permission(request) and self.has_retry_fulfillment_permission(request)):
            raise PermissionDenied
        order = get_object_or_404(Order, pk=as_id(object_id) or 0)
        order_url = reverse("admin:orders_order_change", args=[order.pk])
        if request.method != "POST":
            failed = Delivery.objects.filter(order=order, status=DeliveryStatus.FAILED).count()
            context = {
                **self.admin_site.each_context(request),
                "title": _("Retry fulfillment of order %(number)s?") % {"number": order.public_id},
                "opts": self.opts,
                "order": order,
                "order_url": order_url,
                "failed": failed,
                "status_label": order_status_badge(order, units_failed=failed)[0],
            }
            return TemplateResponse(request, "console/order_retry_confirm.html", context)
        pressed_at = timezone.now()
        try:
            decision = order_fulfillment_retry(order_id=order.pk)
        except (OrderNotFound, OrderNotFulfillable) as exc:
            self.message_user(request, _("Nothing retried: %(why)s") % {"why": exc}, messages.ERROR)
            return HttpResponseRedirect(order_url)
        if decision.queued:
            outcome = _("Retry queued: failed units get a new purchase, waiting ones are sent now.")
            self.message_user(request, f"{order}: {outcome}", messages.SUCCESS)
        else:
            outcome = _("Nothing to retry: %(reason)s.") % {"reason": decision.reason}
            self.message_user(request, f"{order}: {outcome}", messages.WARNING)
        entry = self.log_change(request, order, _("Retried fulfillment. %(outcome)s") % {"outcome": outcome})
        # Dated when staff pressed the button: the delivery it queued may already have run (eager
        # or fast workers), and the timeline must show the cause before its effect.
        LogEntry.objects.filter(pk=entry.pk).update(action_time=pressed_at)
        retry_messages(self, request, [decision])
        return HttpResponseRedirect(order_url)


extend_order_admin(OrderAdmin)


class ReviewFilter(admin.SimpleListFilter):
    title = _("staff review")
    parameter_name = "review"

    def lookups(self, request, model_admin):
        return [("pending", _("Needs review")), ("done", _("Reviewed"))]

    def queryset(self, request, queryset):
        if self.value() == "pending":
            return queryset.filter(verdict=NotificationVerdict.NEEDS_REVIEW, reviewed_at__isnull=True)
        if self.value() == "done":
            return queryset.filter(verdict=NotificationVerdict.NEEDS_REVIEW, reviewed_at__isnull=False)
        return queryset


class RejectedFilter(admin.SimpleListFilter):
    title = _("answer")
    parameter_name = "answer"

    def lookups(self, request, model_admin):
        return [("rejected", _("Rejected (not OK)")), ("ok", _("Accepted (OK)"))]

    def queryset(self, request, queryset):
        if self.value() == "rejected":
            return queryset.filter(verdict__in=sorted(REJECTED_VERDICTS))
        if self.value() == "ok":
            return queryset.exclude(verdict__in=sorted(REJECTED_VERDICTS))
        return queryset


class BankStatusFilter(admin.SimpleListFilter):
    """The statuses T-Bank sends, as fixed choices: no SELECT DISTINCT over millions of rows."""

    title = _("bank status")
    parameter_name = "bank_status"

    def lookups(self, request, model_admin):
        statuses = (
            {tbank_statuses.CONFIRMED, tbank_statuses.AUTHORIZED}
            | tbank_statuses.FAILED_PAYMENT_STATUSES
            | tbank_statuses.MONEY_RETURNED_STATUSES
            | tbank_statuses.PARTIAL_STATUSES
        )
        return [(status, status) for status in sorted(statuses)]

    def queryset(self, request, queryset):
        return queryset.filter(bank_status=self.value()) if self.value() else queryset


@admin.register(PaymentNotification)
class PaymentNotificationAdmin(HugeTableAdminMixin, ExactSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("received_at", "order_link", "bank_status", "verdict_badge", "amount", "payment_id", "http_status")
    list_display_links = ("received_at",)
    list_filter = (ReviewFilter, RejectedFilter, "verdict", BankStatusFilter)
    sortable_by = ("received_at",)
    ordering = ("-id",)
    search_help_text = _("Order id (OrderId as sent) or PaymentId — exact.")
    list_select_related = False
    change_form_template = "console/notification_change_form.html"
    fields = (
        "order_link",
        "received_at",
        "verdict_badge",
        "http_status",
        "detail",
        "bank_status",
        "payment_id",
        "amount",
        "order_ref",
        "remote_addr",
        "source",
        "authenticated",
        "body_size",
        "body_sha256",
        "reviewed",
        "raw_body",
    )
    readonly_fields = fields

    def search_ids(self, word: str) -> set[int]:
        ids = set(
            PaymentNotification.objects.filter(order_ref=word).order_by("-id").values_list("id", flat=True)[:SEARCH_CAP]
        )
        ids |= set(
            PaymentNotification.objects.filter(payment_id=word)
            .order_by("-id")
            .values_list("id", flat=True)[:SEARCH_CAP]
        )
        number = as_id(word)
        if number is not None:
            ids |= set(
                PaymentNotification.objects.filter(order_id=number)
                .order_by("-id")
                .values_list("id", flat=True)[:SEARCH_CAP]
            )
        return ids

    @admin.display(description=_("Order"))
    def order_link(self, obj: PaymentNotification):
        if obj.order_id is None:
            return format_html('<span class="mono">{}</span> ({})', obj.order_ref or "?", _("no such order"))
        url = reverse("admin:orders_order_change", args=[obj.order_id])
        # The OrderId the bank sent is the order's public id: the number staff and customers know.
        return format_html('<a class="mono" href="{}">{}</a>', url, obj.order_ref or obj.order_id)

    @admin.display(description=_("Verdict"), ordering="verdict")
    def verdict_badge(self, obj: PaymentNotification):
        label = obj.get_verdict_display()
        if obj.verdict in REJECTED_VERDICTS:
            return format_html('<span class="badge bad">{}</span>', _("Rejected: %(verdict)s") % {"verdict": label})
        if obj.verdict == NotificationVerdict.NEEDS_REVIEW:
            if obj.reviewed_at:
                return format_html(
                    '<span class="badge muted">{}</span>', _("%(verdict)s — reviewed") % {"verdict": label}
                )
            return format_html('<span class="badge warn">{}</span>', label)
        if obj.verdict == NotificationVerdict.APPLIED:
            return format_html('<span class="badge ok">{}</span>', label)
        return label

    @admin.display(description=_("Amount"))
    def amount(self, obj: PaymentNotification):
        return rubles_html(obj.amount_kopecks)

    @admin.display(description=_("Reviewed"))
    def reviewed(self, obj: PaymentNotification) -> str:
        if not obj.reviewed_at:
            return "—"
        who = obj.reviewed_by.get_username() if obj.reviewed_by else _("staff")
        return _("by %(who)s at %(when)s") % {"who": who, "when": timestamp(obj.reviewed_at)}

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("orders.review_paymentnotification")

    def get_urls(self):
        review = path(
            "<path:object_id>/review/",
            self.admin_site.admin_view(self.review_view),
            name="orders_paymentnotification_review",
        )
        return [review, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        record = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if record is not None:
            extra["can_review"] = (
                record.verdict == NotificationVerdict.NEEDS_REVIEW
                and record.reviewed_at is None
                and self.has_review_permission(request)
            )
            extra["review_url"] = reverse("admin:orders_paymentnotification_review", args=[record.pk])
        return super().change_view(request, object_id, form_url, extra)

    def review_view(self, request, object_id):
        """POST only: mark a notification that needs review as reviewed, recorded in the history."""
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:orders_paymentnotification_change", args=[object_id]))
        if not (self.has_view_permission(request) and self.has_review_permission(request)):
            raise PermissionDenied
        record = get_object_or_404(PaymentNotification, pk=as_id(object_id) or 0)
        try:
            payment_notification_mark_reviewed(notification_id=record.pk, user_id=request.user.pk)
        except NotificationNotReviewable as exc:
            self.message_user(request, str(exc), messages.WARNING)
        else:
            self.log_change(request, record, _("Marked reviewed."))
            if record.order_id:
                order = Order.objects.get(pk=record.order_id)
                self.log_change(request, order, _("Marked payment notification %(id)s reviewed.") % {"id": record.pk})
            self.message_user(request, _("Notification %(id)s marked reviewed.") % {"id": record.pk}, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:orders_paymentnotification_change", args=[record.pk]))


@admin.register(CustomerEmail)
class CustomerEmailAdmin(HugeTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "order", "kind", "event", "send_no", "to", "state", "attempts", "sent_at", "requested_by")
    list_filter = ("state", "kind")
    search_fields = ("=order__id", "=order__public_id", "=to")
    readonly_fields = [f.name for f in CustomerEmail._meta.fields]


# Registered with the rest of the orders admin (Django imports only admin.py).
from orders import admin_catalogue, admin_pricing  # noqa: E402, F401
