"""Provider halts: stop every delivery through a provider, and lift the stop."""

import logging

from django.db.models import Q
from django.utils import timezone

from fulfillment.models import (
    Delivery,
    DeliveryStatus,
    ProviderHalt,
)

logger = logging.getLogger(__name__)


def provider_halt(*, provider: str, code: str, reason: str) -> None:
    """Stop every delivery through `provider` until staff delete the halt."""
    ProviderHalt.objects.get_or_create(provider=provider, defaults={"code": code, "reason": reason})
    logger.error("Deliveries through %s halted: %s (code %s)", provider, reason, code)


def provider_resume(*, provider: str) -> int:
    """Lift a halt; due units are picked up by the next reconciliation."""
    deleted, _ = ProviderHalt.objects.filter(provider=provider).delete()
    if deleted:
        Delivery.objects.filter(
            Q(provider=provider) | Q(provider=""), status__in=(DeliveryStatus.WAITING, DeliveryStatus.PENDING)
        ).update(next_attempt_at=timezone.now())
    return deleted
