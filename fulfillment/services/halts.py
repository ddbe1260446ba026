"""Faults that are not a unit's: provider halts (the whole shop: deposit, credentials, rate limit)
and product pauses (one SKU at one provider: out of stock, seller disrupted).

A fault is raised when a provider answers with it, and held back units wait without using their
purchase attempts. It is lifted when it is shown to be gone: by the periodic account check
(fulfillment.services.accounts), by a probe (after a growing wait, one purchase is let through,
and any answer but the same fault lifts it), when a wait the provider asked for is over, or by
staff. Lifting makes the WAITING units it held back due at once (a PENDING unit keeps its own
schedule), and sends again the units that an earlier version of this service had marked FAILED
for such a fault.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from fulfillment.models import (
    Delivery,
    DeliveryStatus,
    PauseKind,
    ProductPause,
    ProviderHalt,
    units_of_sku,
)
from fulfillment.providers.base import NOT_THE_UNITS_SCOPES, SHOP_WIDE_SCOPES, FailureScope
from fulfillment.services.common import new_reference
from orders.state import OrderStatus

logger = logging.getLogger(__name__)

Fault = ProviderHalt | ProductPause


def _probe_wait(probes: int, retry_after: float | None) -> timedelta:
    """How long until one purchase may test a fault again: what the provider asked for, else a
    backoff that doubles with every probe that met the fault again."""
    if retry_after:
        return timedelta(seconds=retry_after)
    base = settings.FULFILLMENT_FAULT_PROBE_SECONDS
    return timedelta(seconds=min(settings.FULFILLMENT_FAULT_PROBE_MAX_SECONDS, base * 2**probes))


def _raise_fault(
    model,
    *,
    lookup: dict,
    code: str,
    reason: str,
    retry_after: float | None,
    probe: bool,
    probes: bool = True,
    **extra,
):
    now = timezone.now()
    values = {"code": code[:50], "reason": reason, "last_seen_at": now, **extra}
    clears_at = now + timedelta(seconds=retry_after) if retry_after else None
    first_probe = now + _probe_wait(0, retry_after) if probes else None
    with transaction.atomic():
        fault, created = model.objects.select_for_update(no_key=True).get_or_create(
            **lookup, defaults={**values, "next_probe_at": first_probe, "clears_at": clears_at}
        )
        if not created:
            if not probes:
                values.update(next_probe_at=None, clears_at=None)
            elif fault.next_probe_at is None:
                values["next_probe_at"] = first_probe  # a repricing pause that became a fault probes again
            if probe and probes:
                # The probe met the fault again: wait longer before the next one.
                values.update(probes=fault.probes + 1, next_probe_at=now + _probe_wait(fault.probes + 1, retry_after))
            if retry_after and probes:
                values["clears_at"] = clears_at
                values["next_probe_at"] = max(fault.next_probe_at or now, now + _probe_wait(0, retry_after))
            model.objects.filter(pk=fault.pk).update(**values)
            for name, value in values.items():
                setattr(fault, name, value)
    return fault, created


def provider_halt(
    *,
    provider: str,
    code: str,
    reason: str,
    scope: str = FailureScope.CONFIGURATION,
    retry_after: float | None = None,
    balance: int | None = None,
    probe: bool = False,
) -> ProviderHalt:
    """Stop every delivery through `provider`: a shop-wide fault (SHOP or CONFIGURATION scope).

    Again while halted (a run that started before the halt, or a probe) it only notes that the
    fault was seen; a probe that met it pushes the next probe further. `balance`: the deposit the
    failing answer reported, the baseline a top-up is measured against.
    """
    extra = {"scope": str(scope)}
    halt, created = _raise_fault(
        ProviderHalt,
        lookup={"provider": provider},
        code=code,
        reason=reason,
        retry_after=retry_after,
        probe=probe,
        **extra,
    )
    if balance is not None and (halt.lowest_balance is None or balance < halt.lowest_balance):
        ProviderHalt.objects.filter(pk=halt.pk).update(lowest_balance=balance)
        halt.lowest_balance = balance
    if created:
        # Releases through an earlier deposit halt (services.funding) do not carry over to this one.
        Delivery.objects.filter(status=DeliveryStatus.WAITING, released_at__isnull=False).filter(
            Q(provider=provider) | Q(provider="")
        ).update(released_at=None)
        logger.error("Deliveries through %s halted (%s fault, code %s): %s", provider, scope, code, reason)
    return halt


def provider_resume(*, provider: str, reason: str = "") -> int:
    """Lift the halt of `provider`: its WAITING units are due at once, and units an earlier version
    marked FAILED for a shop-wide fault are sent again. Returns how many halts were deleted (0 or 1).

    PENDING units keep their own schedule: their purchase was sent, and asking about it again
    sooner than the provider allows (Digiflazz: once a minute) is what the lift must not cause.
    (The delivery run enforces that interval for every check anyway.)
    """
    deleted, _ = ProviderHalt.objects.filter(provider=provider).delete()
    if deleted:
        Delivery.objects.filter(Q(provider=provider) | Q(provider=""), status=DeliveryStatus.WAITING).update(
            next_attempt_at=timezone.now(), released_at=None
        )
        logger.warning("Deliveries through %s resume: %s", provider, reason or "the halt was lifted")
        deliveries_resume_after_faults(provider=provider)
    return deleted


def product_pause(
    *,
    provider: str,
    sku: str,
    code: str,
    reason: str,
    product_id: int | None = None,
    retry_after: float | None = None,
    probe: bool = False,
    kind: str = PauseKind.FAULT,
) -> ProductPause:
    """Stop deliveries of `sku` through `provider`: a PRODUCT fault, or (`kind` REPRICING) a
    purchase refused for price. Other products go on. A refusal for price while the pause waits
    for staff (after a sync) makes it wait for the next sync again."""
    repricing = kind == PauseKind.REPRICING
    extra = {"product_id": product_id, "kind": kind}
    if repricing:
        extra.update(price=None, repriced_at=None)
    pause, created = _raise_fault(
        ProductPause,
        lookup={"provider": provider, "sku": sku},
        code=code,
        reason=reason,
        retry_after=None if repricing else retry_after,
        probe=probe,
        probes=not repricing,
        **extra,
    )
    if created:
        logger.warning("Deliveries of %s through %s paused (code %s): %s", sku, provider, code, reason)
    return pause


def product_resume(*, provider: str, sku: str, reason: str = "") -> int:
    """Lift the pause of `sku` at `provider`: its waiting units are due at once. Returns 0 or 1."""
    deleted, _ = ProductPause.objects.filter(provider=provider, sku=sku).delete()
    if deleted:
        Delivery.objects.filter(units_of_sku(sku), status=DeliveryStatus.WAITING).update(next_attempt_at=timezone.now())
        logger.warning("Deliveries of %s through %s resume: %s", sku, provider, reason or "the pause was lifted")
        deliveries_resume_after_faults(provider=provider, sku=sku)
    return deleted


def fault_probe_claim(fault: Fault) -> bool:
    """Take the right to send the one probe purchase of `fault`, now due. False when another run
    took it (or it is not due): the unit waits. A probe whose worker died is free again after
    FULFILLMENT_CLAIM_SECONDS."""
    now = timezone.now()
    return bool(
        type(fault)
        .objects.filter(pk=fault.pk, next_probe_at__lte=now)
        .update(next_probe_at=now + timedelta(seconds=settings.FULFILLMENT_CLAIM_SECONDS))
    )


def deliveries_resume_after_faults(*, provider: str | None = None, sku: str | None = None, limit: int = 1000) -> int:
    """Send again the FAILED units of PAID orders whose failure was a product or shop fault that
    no halt or pause covers any more (from before faults were handled by scope, or by staff
    deleting a halt). Their last purchase got a final failure answer, so a new reference cannot
    buy twice; their purchase attempts start again. Returns how many units were reset."""
    stranded = Delivery.objects.filter(
        status=DeliveryStatus.FAILED, failure_scope__in=NOT_THE_UNITS_SCOPES, order__status=OrderStatus.PAID
    )
    if provider is not None:
        stranded = stranded.filter(provider=provider)
    if sku is not None:
        stranded = stranded.filter(units_of_sku(sku), failure_scope=FailureScope.PRODUCT)
    elif provider is not None:
        stranded = stranded.filter(failure_scope__in=SHOP_WIDE_SCOPES)
    halted = Exists(ProviderHalt.objects.filter(provider=OuterRef("provider")))
    paused = Exists(ProductPause.objects.filter(provider=OuterRef("provider"), sku=OuterRef("item__sku")))
    stranded = stranded.exclude(Q(failure_scope__in=SHOP_WIDE_SCOPES) & halted).exclude(
        Q(failure_scope=FailureScope.PRODUCT) & paused
    )
    now = timezone.now()
    reset = 0
    for pk, scope in stranded.order_by().values_list("pk", "failure_scope")[:limit]:
        reset += Delivery.objects.filter(pk=pk, status=DeliveryStatus.FAILED).update(
            status=DeliveryStatus.WAITING,
            reference=new_reference(),
            purchase_no=F("purchase_no") + 1,
            purchase_attempts=0,
            status_checks=0,
            reference_sent_at=None,
            failure_scope="",
            next_attempt_at=now,
            last_message=f"Sent again: the {scope} fault that failed it is no longer active.",
        )
    if reset:
        logger.warning("%d unit(s) failed by a product or shop fault that has cleared are sent again", reset)
    return reset


def fault_hold_until(fault: Fault) -> datetime:
    """Until when a unit held back by `fault` waits before it is looked at again: its next probe,
    at most the stale window (a lift wakes held units at once; this bounds a forgotten one)."""
    now = timezone.now()
    latest = now + timedelta(seconds=settings.FULFILLMENT_STALE_AFTER_SECONDS)
    return max(now, min(fault.next_probe_at or latest, latest))
