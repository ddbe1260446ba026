"""Admin for deliveries, attempts, provider halts, product pauses, order flags and provider
accounts, plus the pieces the order admin borrows: the delivery and flag inlines and the
"Retry fulfillment" action."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from fulfillment.models import (
    Delivery,
    DeliveryAttempt,
    MockLedgerEntry,
    OrderFlag,
    PauseKind,
    ProductPause,
    ProviderAccount,
    ProviderHalt,
)
from fulfillment.providers.base import Outcome
from fulfillment.selectors import units_awaiting_price_decision
from fulfillment.services import (
    OrderNotFound,
    OrderNotFulfillable,
    order_flag_resolve,
    order_fulfillment_retry,
    product_resume,
    provider_resume,
    units_buy_at_new_price,
)
from fulfillment.supplier_catalog import SupplierSku, sku_sellability
from fulfillment_site.console.formatting import provider_amount, timestamp
from fulfillment_site.console.order_page import UNIT_TONES
from fulfillment_site.console.pagination import HugeTableAdminMixin
from fulfillment_site.console.search import SEARCH_CAP, ExactSearchMixin, as_id
from orders.models import Order, OrderItem


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


def order_link(order_id: int, public_id: str | None = None):
    """A link to the order page, named by the order's number (its public id, what customers see)."""
    url = reverse("admin:orders_order_change", args=[order_id])
    return format_html('<a class="mono" href="{}">{}</a>', url, public_id or order_id)


def order_number(order_id: int) -> str:
    """The number people know an order by (its public id), for messages that start from an order's pk."""
    return Order.objects.filter(pk=order_id).values_list("public_id", flat=True).first() or str(order_id)


def with_order_number(queryset):
    """Each row with its order's public id (`order_number`): one indexed sub-select per listed row."""
    return queryset.annotate(
        order_number=Subquery(Order.objects.filter(pk=OuterRef("order_id")).values("public_id")[:1])
    )


def retry_messages(modeladmin, request, decisions) -> None:
    """What staff must know after a retry: units held back, and halted providers."""
    for decision in decisions:
        if decision.held_unknown:
            modeladmin.message_user(request, decision.held_reason, messages.WARNING)
    for halt in ProviderHalt.objects.all():
        modeladmin.message_user(
            request,
            _(
                "Deliveries through %(provider)s are halted: %(reason)s Queued orders wait until the halt is "
                "lifted (Provider halts)."
            )
            % {"provider": halt.provider, "reason": halt.reason},
            messages.ERROR,
        )


@admin.action(description=_("Retry fulfillment of selected paid orders"), permissions=["retry_fulfillment"])
def retry_fulfillment(modeladmin, request, queryset) -> None:
    queued, skipped, decisions = [], [], []
    # Only the ids: the admin's queryset carries per-row annotations the retry does not need.
    for order_id in queryset.order_by("pk").values_list("pk", flat=True):
        try:
            decision = order_fulfillment_retry(order_id=order_id)
        except (OrderNotFound, OrderNotFulfillable) as exc:
            skipped.append(f"{order_number(order_id)}: {exc}")
            continue
        decisions.append(decision)
        if decision.queued:
            queued.append(order_id)
            outcome = _("queued")
        else:
            skipped.append(f"{order_number(order_id)}: {decision.reason}")
            outcome = _("nothing to retry: %(reason)s") % {"reason": decision.reason}
        modeladmin.log_change(
            request,
            queryset.model(pk=order_id),
            _("Retried fulfillment (list action): %(outcome)s.") % {"outcome": outcome},
        )
    if queued:
        modeladmin.message_user(
            request,
            _("Queued for delivery: %(orders)s.") % {"orders": ", ".join(order_number(pk) for pk in queued)},
            messages.SUCCESS,
        )
    if skipped:
        modeladmin.message_user(request, _("Skipped: %(orders)s.") % {"orders": "; ".join(skipped)}, messages.WARNING)
    retry_messages(modeladmin, request, decisions)


class ProviderFilter(admin.SimpleListFilter):
    """The registered providers as fixed choices: no SELECT DISTINCT over millions of rows."""

    title = _("provider")
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        return [(name, name) for name in sorted(settings.FULFILLMENT_PROVIDERS)]

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


class OutcomeFilter(admin.SimpleListFilter):
    title = _("outcome")
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [(outcome.value, outcome.value) for outcome in Outcome]

    def queryset(self, request, queryset):
        return queryset.filter(outcome=self.value()) if self.value() else queryset


class PriceDecisionFilter(admin.SimpleListFilter):
    title = _("price decision")
    parameter_name = "price_decision"

    def lookups(self, request, model_admin):
        return [("waiting", _("Waiting for a price decision"))]

    def queryset(self, request, queryset):
        if self.value() == "waiting":
            return queryset.filter(pk__in=units_awaiting_price_decision().values("pk"))
        return queryset


@admin.action(description=_("Buy at the supplier's new price"), permissions=["buy_at_new_price"])
def buy_at_new_price(modeladmin, request, queryset) -> None:
    """Staff's decision for units a supplier price rise holds: buy them anyway, at the new price."""
    decision = units_buy_at_new_price(
        unit_ids=list(queryset.values_list("pk", flat=True)), decided_by=request.user.get_username()
    )
    if decision.bought:
        modeladmin.message_user(
            request,
            ngettext(
                "%(count)d unit will be bought at the supplier's new price now.",
                "%(count)d units will be bought at the supplier's new price now.",
                decision.bought,
            )
            % {"count": decision.bought},
            messages.SUCCESS,
        )
    if decision.skipped:
        modeladmin.message_user(
            request,
            _("Left as they were (no supplier price rise holds them): %(units)s.")
            % {"units": "; ".join(decision.skipped)},
            messages.WARNING,
        )


def _badge(text: str, tone: str):
    return format_html('<span class="badge {}">{}</span>', tone or "muted", text)


@admin.register(Delivery)
class DeliveryAdmin(HugeTableAdminMixin, ExactSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "unit_key",
        "order_column",
        "status_badge",
        "sku_column",
        "reference",
        "attempts_column",
        "last_code",
        "cost_column",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = (PriceDecisionFilter, "status", ProviderFilter)
    actions = [buy_at_new_price]
    sortable_by = ("unit_key",)
    ordering = ("-id",)
    search_help_text = _("Provider reference, unit key, order id or recipient — exact.")
    # Not an inline: a unit checked for days has hundreds of attempts, and a formset renders all.
    fields = [f.name for f in Delivery._meta.fields] + ["attempts_table"]
    readonly_fields = fields

    def get_queryset(self, request):
        # The item's SKU by one indexed sub-select per listed row, as the order number: no join that
        # the count of millions of units would carry.
        item_sku = Subquery(OrderItem.objects.filter(pk=OuterRef("item_id")).values("sku")[:1])
        return with_order_number(super().get_queryset(request)).annotate(item_sku=item_sku)

    def has_buy_at_new_price_permission(self, request) -> bool:
        return request.user.has_perm("fulfillment.buy_at_new_price")

    @admin.display(description=_("Provider and SKU"), ordering="provider")
    def sku_column(self, obj: Delivery) -> str:
        # A unit's own SKU is set only when routing moved it off its item's SKU; its provider only
        # once a purchase was sent.
        sku = format_html('<span class="mono">{}</span>', obj.sku or getattr(obj, "item_sku", "") or "—")
        if obj.sku:
            sku = format_html('{} <span class="badge info">{}</span>', sku, _("backup"))
        return format_html('{}<div class="detail">{}</div>', sku, obj.provider or "—")

    @admin.display(description=_("Attempts"), ordering="purchase_attempts")
    def attempts_column(self, obj: Delivery) -> int:
        return obj.purchase_attempts

    @admin.display(description=_("Cost"), ordering="cost")
    def cost_column(self, obj: Delivery) -> str:
        return provider_amount(obj.cost) if obj.cost is not None else "—"

    def search_ids(self, word: str) -> set[int]:
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

    @admin.display(description=_("Order"), ordering="order_id")
    def order_column(self, obj: Delivery):
        return order_link(obj.order_id, getattr(obj, "order_number", None))

    @admin.display(description=_("Provider calls (newest first)"))
    def attempts_table(self, obj: Delivery):
        attempts = list(obj.attempts.order_by("-id")[:UNIT_ATTEMPTS_SHOWN])
        if not attempts:
            return _("None yet.")
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
                    _("%(ms)d ms") % {"ms": a.duration_ms},
                )
                for a in attempts
            ),
        )
        more = ""
        if len(attempts) == UNIT_ATTEMPTS_SHOWN:
            url = reverse("admin:fulfillment_deliveryattempt_changelist")
            more = format_html(
                '<p class="help">{} <a href="{}?q={}">{}</a>.</p>',
                _("The latest %(count)d are shown:") % {"count": UNIT_ATTEMPTS_SHOWN},
                url,
                obj.order_id,
                _("every attempt of this order"),
            )
        return format_html(
            '<table class="console-table"><thead><tr><th>Started</th><th>Kind</th><th>Provider</th>'
            "<th>Reference</th><th>Outcome</th><th>Code</th><th>Message</th><th>Took</th></tr></thead>"
            "<tbody>{}</tbody></table>{}",
            rows,
            more,
        )

    @admin.display(description=_("Status"), ordering="status")
    def status_badge(self, obj: Delivery):
        return _badge(obj.get_status_display(), UNIT_TONES.get(obj.status, "info"))


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(HugeTableAdminMixin, ExactSearchMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("started_at", "order_column", "kind", "provider", "reference", "outcome_badge", "code", "duration")
    list_display_links = ("started_at",)
    list_filter = ("kind", OutcomeFilter, ProviderFilter)
    sortable_by = ()  # newest first only: started_at has no index
    ordering = ("-id",)
    search_help_text = _("Provider reference or order id — exact.")
    readonly_fields = [f.name for f in DeliveryAttempt._meta.fields]

    def get_queryset(self, request):
        return with_order_number(super().get_queryset(request))

    def search_ids(self, word: str) -> set[int]:
        ids = set(
            DeliveryAttempt.objects.filter(reference=word).order_by("-id").values_list("id", flat=True)[:SEARCH_CAP]
        )
        number = as_id(word)
        if number is not None:
            attempts = DeliveryAttempt.objects.filter(order_id=number).order_by("-id")
            ids |= set(attempts.values_list("id", flat=True)[:SEARCH_CAP])
        return ids

    @admin.display(description=_("Order"), ordering="order_id")
    def order_column(self, obj: DeliveryAttempt):
        return order_link(obj.order_id, getattr(obj, "order_number", None))

    @admin.display(description=_("Took"))
    def duration(self, obj: DeliveryAttempt) -> str:
        if obj.duration_ms >= 1000:
            return _("%(seconds).1f s") % {"seconds": obj.duration_ms / 1000}
        return _("%(ms)d ms") % {"ms": obj.duration_ms}

    @admin.display(description=_("Outcome"), ordering="outcome")
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

    def get_actions(self, request):
        # "Delete selected ..." reads as destroying a record; what staff do is lift the fault.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description=_("What happened, what to fix"))
    def reason_text(self, obj) -> str:
        return format_html("<strong>{}</strong>", obj.reason)


@admin.action(description=_("Lift selected halts (deliveries resume now)"), permissions=["delete"])
def lift_halts(modeladmin, request, queryset) -> None:
    providers = list(queryset.values_list("provider", flat=True))
    modeladmin.delete_queryset(request, queryset)
    modeladmin.message_user(request, _("Lifted: %(names)s.") % {"names": ", ".join(providers)}, messages.SUCCESS)


@admin.action(description=_("Lift selected pauses (deliveries resume now)"), permissions=["delete"])
def lift_pauses(modeladmin, request, queryset) -> None:
    skus = [sku for _provider, sku in queryset.values_list("provider", "sku")]
    modeladmin.delete_queryset(request, queryset)
    modeladmin.message_user(request, _("Lifted: %(names)s.") % {"names": ", ".join(skus)}, messages.SUCCESS)


@admin.register(ProviderHalt)
class ProviderHaltAdmin(FaultAdmin):
    actions = [lift_halts]
    list_display = ("provider", "scope", "code", "reason_text", "created_at", "next_probe_at", "clears_at", "checked")
    readonly_fields = [f.name for f in ProviderHalt._meta.fields]

    def delete_model(self, request, obj: ProviderHalt) -> None:
        provider_resume(provider=obj.provider, reason=f"lifted by {request.user.get_username()}")

    def delete_queryset(self, request, queryset) -> None:
        for provider in queryset.values_list("provider", flat=True):
            provider_resume(provider=provider, reason=f"lifted by {request.user.get_username()}")

    @admin.display(description=_("Last account check"))
    def checked(self, obj: ProviderHalt) -> str:
        return f"{timestamp(obj.checked_at)}: {obj.check_result}" if obj.checked_at else _("not yet")


@admin.register(ProductPause)
class ProductPauseAdmin(FaultAdmin):
    actions = [lift_pauses]
    list_display = (
        "sku",
        "provider",
        "product",
        "kind",
        "code",
        "reason_text",
        "new_price",
        "repriced_at",
        "created_at",
        "next_probe_at",
        "probes",
    )
    list_filter = ("kind", "provider")
    search_fields = ("sku",)
    readonly_fields = [f.name for f in ProductPause._meta.fields]

    @admin.display(description=_("new supplier price"), ordering="price")
    def new_price(self, obj: ProductPause) -> str:
        if obj.kind != PauseKind.REPRICING:
            return "—"
        return provider_amount(obj.price) if obj.price is not None else _("waiting for the next sync")

    def delete_model(self, request, obj: ProductPause) -> None:
        product_resume(provider=obj.provider, sku=obj.sku, reason=f"lifted by {request.user.get_username()}")

    def delete_queryset(self, request, queryset) -> None:
        for provider, sku in queryset.values_list("provider", "sku"):
            product_resume(provider=provider, sku=sku, reason=f"lifted by {request.user.get_username()}")


class OpenFlagFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", _("Open")), ("resolved", _("Resolved"))]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.action(description=_("Mark selected flags resolved"))
def resolve_flags(modeladmin, request, queryset) -> None:
    done = sum(
        order_flag_resolve(flag_id=pk, resolved_by=request.user.get_username())
        for pk in queryset.values_list("pk", flat=True)
    )
    modeladmin.message_user(request, _("Flags resolved: %(count)d.") % {"count": done}, messages.SUCCESS)


@admin.register(OrderFlag)
class OrderFlagAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Orders staff must look at. Resolve a flag once dealt with; it stays on record."""

    list_display = ("created_at", "order_column", "kind", "reason", "resolved_at", "resolved_by")
    list_filter = (OpenFlagFilter, "kind")
    search_fields = ("=order__id", "=order__public_id")
    actions = [resolve_flags]
    readonly_fields = [f.name for f in OrderFlag._meta.fields]

    def get_queryset(self, request):
        return with_order_number(super().get_queryset(request))

    @admin.display(description=_("Order"), ordering="order_id")
    def order_column(self, obj: OrderFlag):
        return order_link(obj.order_id, getattr(obj, "order_number", None))

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

    @admin.display(description=_("Last known deposit (provider currency)"), ordering="balance")
    def deposit(self, obj: ProviderAccount) -> str:
        return provider_amount(obj.balance)


@admin.register(SupplierSku)
class SupplierSkuAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The supplier's catalogue as the last price-list sync described it (written only by the sync)."""

    list_display = (
        "code",
        "product_name",
        "seller_name",
        "price",
        "sellable_now",
        "stock_text",
        "cut_off",
        "synced_at",
    )
    list_filter = ("provider", "in_price_list", "buyer_product_status", "seller_product_status", "category")
    search_fields = ("code", "product_name")
    show_full_result_count = False

    @admin.display(description=_("sellable now"))
    def sellable_now(self, obj: SupplierSku) -> str:
        verdict = sku_sellability(obj)
        if verdict.sellable:
            return _("yes")
        return _("no: %(reason)s") % {"reason": verdict.reason}

    @admin.display(description=_("stock"))
    def stock_text(self, obj: SupplierSku) -> str:
        return _("unlimited") if obj.unlimited_stock else str(obj.stock if obj.stock is not None else "—")

    @admin.display(description=_("cut-off (WIB)"))
    def cut_off(self, obj: SupplierSku) -> str:
        if obj.start_cut_off is None or obj.end_cut_off is None or obj.start_cut_off == obj.end_cut_off:
            return "—"
        return f"{obj.start_cut_off:%H:%M}–{obj.end_cut_off:%H:%M}"
