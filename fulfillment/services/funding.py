"""Lifting a deposit halt as far as the deposit goes.

A halt for a provider's deposit code (FulfillmentProvider.deposit_fault_codes: Digiflazz rc 44,
61) is not lifted by any top-up. Each balance seen (the periodic account check, or the answer of
a probe purchase) is matched against the units waiting behind the halt, oldest first:

* a unit's cost is the provider price snapshotted on its order item, else its max provider price
  (the most it can cost), else unknown;
* units released earlier and not bought yet are paid out of the balance first;
* then, oldest first, every unit whose cost fits what is left is released (a unit that does not
  fit is skipped, so a younger cheaper one may go; the older one stays first in line and goes as
  soon as a balance covers it);
* a unit of unknown cost cannot be shown to be covered: units of unknown cost go only once no
  unit of known cost is held, something is left, and the deposit was topped up since the halt
  began (the balance is above the lowest seen): the rule every unit had before prices were known;
* when nothing stays held, the halt is lifted (provider_resume); otherwise it stays, released
  units pass it (Delivery.released_at), and the held ones say why in their last message.

Oldest first because the customers who paid first have waited longest, and the order (unit id,
which follows payment) is deterministic. Held units stay WAITING: they never fail, are never
refunded for it and use no purchase attempt; the next balance seen releases them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus, ProductPause, ProviderAccount, ProviderHalt
from fulfillment.registry import get_provider_class
from fulfillment.services.halts import provider_resume
from fulfillment.services.queueing import order_fulfillment_queue
from orders.state import OrderStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WaitingUnit:
    pk: int
    order_id: int
    cost: int | None  # None: not known
    released: bool = False  # released by an earlier balance, not bought yet


@dataclass(frozen=True)
class DepositPlan:
    """What a balance covers of the units waiting behind a deposit halt."""

    balance: int
    committed: int  # the known cost of units released earlier and not bought yet
    release: tuple[WaitingUnit, ...]
    held: tuple[WaitingUnit, ...]

    @property
    def held_cost(self) -> int:
        return sum(unit.cost or 0 for unit in self.held)

    @property
    def held_unknown(self) -> int:
        return sum(1 for unit in self.held if unit.cost is None)

    @property
    def released_cost(self) -> int:
        return sum(unit.cost or 0 for unit in self.release)

    @property
    def shortfall(self) -> int:
        """How much more the deposit needs to cover every held unit of known cost."""
        return max(0, self.committed + self.released_cost + self.held_cost - self.balance)


def deposit_plan(units: Sequence[WaitingUnit], *, balance: int, topped_up: bool) -> DepositPlan:
    """Which of `units` (oldest first) `balance` covers: see the module docstring. `topped_up`:
    the balance is higher than the lowest seen since the halt began."""
    committed = sum(unit.cost or 0 for unit in units if unit.released)
    left = balance - committed
    release: list[WaitingUnit] = []
    held: list[WaitingUnit] = []
    unknown: list[WaitingUnit] = []
    for unit in units:
        if unit.released:
            continue
        if unit.cost is None:
            unknown.append(unit)
        elif unit.cost <= left:
            release.append(unit)
            left -= unit.cost
        else:
            held.append(unit)
    if unknown and not held and left > 0 and topped_up:
        release.extend(unknown)
    else:
        held.extend(unknown)
    held.sort(key=lambda unit: unit.pk)
    return DepositPlan(balance=balance, committed=committed, release=tuple(release), held=tuple(held))


def is_deposit_halt(halt: ProviderHalt) -> bool:
    try:
        return halt.code in get_provider_class(halt.provider).deposit_fault_codes
    except ImproperlyConfigured:
        return False


def _waiting(provider: str):
    """The units a deposit halt of `provider` holds: WAITING units of PAID orders whose new
    purchase goes there, less those a product pause holds anyway."""
    through = Q(item__provider=provider)
    if provider == settings.FULFILLMENT_PROVIDER:
        through |= Q(item__provider="")  # items older than OrderItem.provider
    paused = Exists(ProductPause.objects.filter(provider=provider, sku=OuterRef("item__sku")))
    return (
        Delivery.objects.filter(through, status=DeliveryStatus.WAITING, order__status=OrderStatus.PAID)
        .exclude(paused)
        .annotate(expected_cost=Coalesce("item__provider_price", "item__max_provider_price"))
    )


def _waiting_units(provider: str) -> list[WaitingUnit]:
    rows = _waiting(provider).order_by("pk").values_list("pk", "order_id", "expected_cost", "released_at")
    return [WaitingUnit(pk, order_id, cost, released_at is not None) for pk, order_id, cost, released_at in rows]


@dataclass(frozen=True)
class DepositRelease:
    plan: DepositPlan
    lifted: bool
    summary: str


def provider_release_by_deposit(*, provider: str, balance: int, source: str) -> DepositRelease | None:
    """Match `balance` (the deposit `source` reported) against the units a deposit halt of
    `provider` holds: release those it covers, lift the halt when none stays held. None when the
    provider has no deposit halt (the caller lifts other halts its own way)."""
    halt = ProviderHalt.objects.filter(provider=provider).first()
    if halt is None or not is_deposit_halt(halt):
        return None
    now = timezone.now()
    units = _waiting_units(provider)
    lowest = halt.lowest_balance
    topped_up = lowest is not None and balance > lowest
    if lowest is None or balance < lowest:
        ProviderHalt.objects.filter(pk=halt.pk).update(lowest_balance=balance)
    plan = deposit_plan(units, balance=balance, topped_up=topped_up)
    if not units:
        # Nothing waits to measure the balance against: a top-up since the halt began lifts it.
        if topped_up:
            provider_resume(provider=provider, reason=f"{source} shows {balance:,} on the deposit and nothing waits")
            return DepositRelease(plan, lifted=True, summary="nothing waits")
        _note(halt, now=now, summary=f"Deposit {balance:,} ({source}); no top-up seen yet, nothing waits.")
        return DepositRelease(plan, lifted=False, summary="")
    if not plan.held:
        reason = f"{source} shows {balance:,} on the deposit, enough for the {len(units)} unit(s) waiting"
        provider_resume(provider=provider, reason=reason)
        return DepositRelease(plan, lifted=True, summary=reason)
    summary = _summary(plan, provider=provider, source=source)
    with transaction.atomic():
        _release(plan, provider=provider, now=now)
        _hold(plan, provider=provider)
        _note(halt, now=now, summary=summary)
    if plan.release:
        logger.warning("Deliveries through %s partly resume: %s", provider, summary)
    return DepositRelease(plan, lifted=False, summary=summary)


def _summary(plan: DepositPlan, *, provider: str, source: str) -> str:
    unknown = f", {plan.held_unknown} of unknown price" if plan.held_unknown else ""
    return (
        f"Deposit {plan.balance:,} ({source}): {len(plan.release)} unit(s) released now ({plan.released_cost:,}), "
        f"{len(plan.held)} held ({plan.held_cost:,}{unknown}); top up at least {plan.shortfall:,} more for "
        f"every held unit to go through {provider}."
    )[:500]


def _release(plan: DepositPlan, *, provider: str, now: datetime) -> None:
    if not plan.release:
        return
    Delivery.objects.filter(
        pk__in=[unit.pk for unit in plan.release], status=DeliveryStatus.WAITING, released_at__isnull=True
    ).update(
        released_at=now,
        next_attempt_at=now,
        last_message=(
            f"Released while {provider} is halted for its deposit: the deposit seen ({plan.balance:,}) covers it."
        ),
    )
    for order_id in sorted({unit.order_id for unit in plan.release}):
        order_fulfillment_queue(order_id=order_id)


def _hold(plan: DepositPlan, *, provider: str) -> None:
    """Say on each held unit why it waits (the order page and the unit page show last_message)."""
    messages = {
        True: (
            f"Held: the {provider} deposit seen ({plan.balance:,}) does not cover this unit after the older ones. "
            "It goes as soon as a top-up covers it; it is never failed or refunded for this."
        ),
        False: (
            f"Held: the {provider} deposit is short and this unit's price is not known, so it goes once every "
            "unit of known price is covered. It is never failed or refunded for this."
        ),
    }
    for known, message in messages.items():
        pks = [unit.pk for unit in plan.held if (unit.cost is not None) == known]
        if pks:
            Delivery.objects.filter(pk__in=pks, status=DeliveryStatus.WAITING).exclude(last_message=message).update(
                last_message=message
            )


def _note(halt: ProviderHalt, *, now: datetime, summary: str) -> None:
    ProviderHalt.objects.filter(pk=halt.pk).update(checked_at=now, check_result=summary[:500])


@dataclass(frozen=True)
class DepositShortfall:
    """What the staff dashboard shows for a provider halted for its deposit."""

    provider: str
    balance: int | None  # the last balance seen (ProviderAccount); None: never checked
    balance_checked_at: datetime | None
    held_units: int
    held_cost: int  # the known cost of the held units
    held_unknown: int  # held units whose price is not known
    released_units: int  # released, not bought yet
    needed: int  # how much more the deposit needs for every held unit of known cost


def deposit_shortfalls(*, halts: Sequence[ProviderHalt] | None = None) -> list[DepositShortfall]:
    """One DepositShortfall per provider halted for its deposit, by provider name: two queries per
    such halt (the balance seen, one aggregate over the units waiting behind it). `halts`: the
    halts already read (provider and code are enough), else they are read here."""
    shortfalls = []
    if halts is None:
        halts = list(ProviderHalt.objects.order_by("provider"))
    for halt in sorted(halts, key=lambda halt: halt.provider):
        if not is_deposit_halt(halt):
            continue
        account = ProviderAccount.objects.filter(provider=halt.provider).values("balance", "balance_checked_at").first()
        balance = account["balance"] if account else None
        held, released = Q(released_at__isnull=True), Q(released_at__isnull=False)
        totals = _waiting(halt.provider).aggregate(
            held_units=Count("pk", filter=held),
            held_cost=Coalesce(Sum("expected_cost", filter=held), 0),
            held_unknown=Count("pk", filter=held & Q(expected_cost__isnull=True)),
            released_units=Count("pk", filter=released),
            committed=Coalesce(Sum("expected_cost", filter=released), 0),
        )
        committed = totals.pop("committed")
        shortfalls.append(
            DepositShortfall(
                provider=halt.provider,
                balance=balance,
                balance_checked_at=account["balance_checked_at"] if account else None,
                needed=max(0, committed + totals["held_cost"] - (balance or 0)),
                **totals,
            )
        )
    return shortfalls
