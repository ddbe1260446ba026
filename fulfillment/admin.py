"""Admin for deliveries, attempts, provider halts, product pauses, order flags and provider
accounts, plus the pieces the order admin borrows: the delivery and flag inlines and the
"Retry fulfillment" action."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from fulfillment.models import (
    Delivery,
    DeliveryAttempt,
    MockLedgerEntry,
    OrderFlag,
    ProductPause,
    ProviderAccount,
    ProviderHalt,
)
from fulfillment.providers.base import Outcome
from fulfillment.services import (
    OrderNotFound,
    OrderNotFulfillable,
    order_flag_resolve,
    order_fulfillment_retry,
    product_resume,
    provider_resume,
)
from fulfillment_site.console.formatting import provider_amount, timestamp
from fulfillment_site.console.order_page import UNIT_TONES
from fulfillment_site.console.pagination import HugeTableAdminMixin
from fulfillment_site.console.search import SEARCH_CAP, ExactSearchMixin, as_id


class ReadOnlyAdminMixin:
    """Audit records: visible, never edited or deleted from the admin."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


#: Provider calls listed on a unit's page; the attempt list has the rest.
UNIT_ATTEMPTS_SHOWN = 100


def order_link(order_id: int):
    return format_html('<a href="{}">{}</a>', reverse("admin:orders_order_change", args=[order_id]), order_id)


def retry_messages(modeladmin, request, decisions) -> None:
    """What staff must know after a retry: units held back, and halted providers."""
    for decision in decisions:
        if decision.held_unknown:
            modeladmin.message_user(request, decision.held_reason, messages.WARNING)
    for halt in ProviderHalt.objects.all():
        modeladmin.message_user(
            request,
            f"Deliveries through {halt.provider} are halted: {halt.reason} Queued orders wait until "
            "the halt is removed (Fulfillment > Provider halts).",
            messages.ERROR,
        )


@admin.action(description="Retry fulfillment of selected paid orders", permissions=["retry_fulfillment"])
def retry_fulfillment(modeladmin, request, queryset) -> None:
    queued, skipped, decisions = [], [], []
    # Only the ids: the admin's queryset carries per-row annotations the retry does not need.
    for order_id in queryset.order_by("pk").values_list("pk", flat=True):
        try:
            decision = order_fulfillment_retry(order_id=order_id)
        except (OrderNotFound, OrderNotFulfillable) as exc:
            skipped.append(f"#{order_id}: {exc}")
            continue
        decisions.append(decision)
        if decision.queued:
            queued.append(order_id)
            outcome = "queued"
        else:
            skipped.append(f"#{order_id}: {decision.reason}")
            outcome = f"nothing to retry: {decision.reason}"
        modeladmin.log_change(request, queryset.model(pk=order_id), f"Retried fulfillment (list action): {outcome}.")
    if queued:
        modeladmin.message_user(
            request,
            f"Queued {len(queued)} order(s) for delivery: " + ", ".join(f"#{pk}" for pk in queued) + ".",
            messages.SUCCESS,
        )
    if skipped:
        modeladmin.message_user(request, f"Skipped {len(skipped)} order(s): " + "; ".join(skipped), messages.WARNING)
    retry_messages(modeladmin, request, decisions)


class ProviderFilter(admin.SimpleListFilter):
    """The registered providers as fixed choices: no SELECT DISTINCT over millions of rows."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(settings.FULFILLMENT_PROVIDERS)]

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [(outcome.value, outcome.value) for outcome in Outcome]

    def queryset(self, request, queryset):
        return queryset.filter(outcome=self.value()) if self.value() else queryset


def _badge(text: str, tone: str):
    return format_html('<span class="badge {}">{}</span>', tone or "muted", text)


@admin.register(Delivery)
class DeliveryAdmin(HugeTableAdminMixin, ExactSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "unit_key",
        "order_column",
        "status_badge",
        "provider",
        "reference",
        "purchase_attempts",
        "last_code",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", ProviderFilter)
    sortable_by = ("unit_key",)
    ordering = ("-id",)
    search_help_text = "Provider reference, unit key, order id or recipient — exact."
    # Not an inline: a unit checked for days has hundreds of attempts, and a formset renders all.
    fields = [f.name for f in Delivery._meta.fields] + ["attempts_table"]
    readonly_fields = fields

    def search_ids(self, word: str) -> set[int]:
        from orders.models import OrderItem

        ids = set(Delivery.objects.filter(reference=word).values_list("id", flat=True))
        ids |= set(Delivery.objects.filter(unit_key=word).values_list("id", flat=True))
        ids |= set(DeliveryAttempt.objects.filter(reference=word).values_list("delivery_id", flat=True)[:SEARCH_CAP])
        number = as_id(word)
        if number is not None:
            ids |= set(Delivery.objects.filter(order_id=number).values_list("id", flat=True)[:SEARCH_CAP])
        items = list(OrderItem.objects.filter(recipient=word).order_by("-id").values_list("id", flat=True)[:SEARCH_CAP])
        if items:
            ids |= set(Delivery.objects.filter(item_id__in=items).values_list("id", flat=True)[:SEARCH_CAP])
        return ids

    @admin.display(description="Order", ordering="order_id")
    def order_column(self, obj: Delivery):
        return order_link(obj.order_id)

    @admin.display(description="Provider calls (newest first)")
    def attempts_table(self, obj: Delivery):
        attempts = list(obj.attempts.order_by("-id")[:UNIT_ATTEMPTS_SHOWN])
        if not attempts:
            return "None yet."
        rows = format_html_join(
            "",
            "<tr><td class='nowrap'>{}</td><td>{}</td><td>{}</td><td class='mono'>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    timestamp(a.started_at),
                    a.get_kind_display(),
                    a.provider,
                    a.reference,
                    a.outcome,
                    a.code,
                    a.message,
                    f"{a.duration_ms} ms",
                )
                for a in attempts
            ),
        )
        more = ""
        if len(attempts) == UNIT_ATTEMPTS_SHOWN:
            url = reverse("admin:fulfillment_deliveryattempt_changelist")
            more = format_html(
                '<p class="help">The latest {} are shown: <a href="{}?q={}">every attempt of order {}</a>.</p>',
                UNIT_ATTEMPTS_SHOWN,
                url,
                obj.order_id,
                obj.order_id,
            )
        return format_html(
            '<table class="console-table"><thead><tr><th>Started</th><th>Kind</th><th>Provider</th>'
            "<th>Reference</th><th>Outcome</th><th>Code</th><th>Message</th><th>Took</th></tr></thead>"
            "<tbody>{}</tbody></table>{}",
            rows,
            more,
        )

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Delivery):
        return _badge(obj.get_status_display(), UNIT_TONES.get(obj.status, "info"))


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(HugeTableAdminMixin, ExactSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("started_at", "order_column", "kind", "provider", "reference", "outcome_badge", "code", "duration")
    list_display_links = ("started_at",)
    list_filter = ("kind", OutcomeFilter, ProviderFilter)
    sortable_by = ()  # newest first only: started_at has no index
    ordering = ("-id",)
    search_help_text = "Provider reference or order id — exact."
    readonly_fields = [f.name for f in DeliveryAttempt._meta.fields]

    def search_ids(self, word: str) -> set[int]:
        ids = set(
            DeliveryAttempt.objects.filter(reference=word).order_by("-id").values_list("id", flat=True)[:SEARCH_CAP]
        )
        number = as_id(word)
        if number is not None:
            attempts = DeliveryAttempt.objects.filter(order_id=number).order_by("-id")
            ids |= set(attempts.values_list("id", flat=True)[:SEARCH_CAP])
        return ids

    @admin.display(description="Order", ordering="order_id")
    def order_column(self, obj: DeliveryAttempt):
        return order_link(obj.order_id)

    @admin.display(description="Took")
    def duration(self, obj: DeliveryAttempt) -> str:
        return f"{obj.duration_ms / 1000:.1f} s" if obj.duration_ms >= 1000 else f"{obj.duration_ms} ms"

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_badge(self, obj: DeliveryAttempt):
        return _badge(obj.outcome, {"delivered": "ok", "failed": "bad", "pending": "info"}.get(obj.outcome, ""))


class FlagInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderFlag
    fields = ("created_at", "kind", "reason", "delivery", "attempt", "resolved_at", "resolved_by")
    readonly_fields = fields
    extra = 0


class FaultAdmin(admin.ModelAdmin):
    """Halts and pauses lift by themselves once the fault is shown to be gone; staff may lift one
    sooner by deleting it (the held units are due at once)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="What happened, what to fix")
    def reason_text(self, obj) -> str:
        return format_html("<strong>{}</strong>", obj.reason)


@admin.register(ProviderHalt)
class ProviderHaltAdmin(FaultAdmin):
    list_display = ("provider", "scope", "code", "reason_text", "created_at", "next_probe_at", "clears_at", "checked")
    readonly_fields = [f.name for f in ProviderHalt._meta.fields]

    def delete_model(self, request, obj: ProviderHalt) -> None:
        provider_resume(provider=obj.provider, reason=f"lifted by {request.user.get_username()}")

    def delete_queryset(self, request, queryset) -> None:
        for provider in queryset.values_list("provider", flat=True):
            provider_resume(provider=provider, reason=f"lifted by {request.user.get_username()}")

    @admin.display(description="Last account check")
    def checked(self, obj: ProviderHalt) -> str:
        return f"{timestamp(obj.checked_at)}: {obj.check_result}" if obj.checked_at else "not yet"


@admin.register(ProductPause)
class ProductPauseAdmin(FaultAdmin):
    list_display = ("sku", "provider", "product", "code", "reason_text", "created_at", "next_probe_at", "probes")
    list_filter = ("provider",)
    search_fields = ("sku",)
    readonly_fields = [f.name for f in ProductPause._meta.fields]

    def delete_model(self, request, obj: ProductPause) -> None:
        product_resume(provider=obj.provider, sku=obj.sku, reason=f"lifted by {request.user.get_username()}")

    def delete_queryset(self, request, queryset) -> None:
        for provider, sku in queryset.values_list("provider", "sku"):
            product_resume(provider=provider, sku=sku, reason=f"lifted by {request.user.get_username()}")


class OpenFlagFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.action(description="Mark selected flags resolved")
def resolve_flags(modeladmin, request, queryset) -> None:
    done = sum(
        order_flag_resolve(flag_id=pk, resolved_by=request.user.get_username())
        for pk in queryset.values_list("pk", flat=True)
    )
    modeladmin.message_user(request, f"Resolved {done} flag(s).", messages.SUCCESS)


@admin.register(OrderFlag)
class OrderFlagAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Orders staff must look at. Resolve a flag once dealt with; it stays on record."""

    list_display = ("created_at", "order_id", "kind", "reason", "resolved_at", "resolved_by")
    list_filter = (OpenFlagFilter, "kind")
    search_fields = ("=order__id",)
    actions = [resolve_flags]
    readonly_fields = [f.name for f in OrderFlag._meta.fields]

    def has_change_permission(self, request, obj=None) -> bool:
        # Needed for the action; the form itself shows read-only fields only.
        return request.user.has_perm("fulfillment.change_orderflag")


@admin.register(MockLedgerEntry)
class MockLedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The Mock provider's own bookkeeping, for tests and demos: reachable by URL, not on the menu."""

    list_display = ("reference", "unit_key", "sku", "recipient", "outcome", "serial", "calls", "created_at")
    list_filter = ("outcome",)
    search_fields = ("=reference", "unit_key", "recipient")

    def get_model_perms(self, request) -> dict:
        return {}


@admin.register(ProviderAccount)
class ProviderAccountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Filled by the periodic account check, `manage.py digiflazz_balance` and `manage.py sync_digiflazz_products`."""

    list_display = (
        "provider",
        "deposit",
        "balance_checked_at",
        "checked_at",
        "check_ok",
        "check_message",
        "price_list_requested_at",
        "price_list_summary",
    )
    readonly_fields = [f.name for f in ProviderAccount._meta.fields]

    @admin.display(description="Last known deposit (provider currency)", ordering="balance")
    def deposit(self, obj: ProviderAccount) -> str:
        return provider_amount(obj.balance)
