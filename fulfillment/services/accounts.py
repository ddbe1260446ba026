"""The periodic account check: ask each provider in use about the shop's account (without buying),
remember the balance in ProviderAccount, and lift a provider's halt once the check shows its fault
gone (credentials fixed, a rate limit's wait over); a deposit halt as far as the balance covers
the units waiting behind it (fulfillment.services.funding)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from fulfillment.models import ProviderAccount, ProviderHalt
from fulfillment.providers.base import AccountStatus
from fulfillment.registry import get_fulfillment_provider
from fulfillment.services.funding import is_deposit_halt, provider_release_by_deposit
from fulfillment.services.halts import provider_resume

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountCheckReport:
    provider: str
    status: AccountStatus | None  # None: the provider has no account call, or could not be built
    halted: bool = False  # whether the provider was halted when checked
    lifted: bool = False  # whether this check lifted the halt
    detail: str = ""


def provider_accounts_check() -> list[AccountCheckReport]:
    """Check the configured provider and every halted one (the Celery beat task, every
    FULFILLMENT_ACCOUNT_CHECK_INTERVAL_SECONDS)."""
    names = {settings.FULFILLMENT_PROVIDER} | set(ProviderHalt.objects.values_list("provider", flat=True))
    return [provider_account_check(provider=name) for name in sorted(names)]


def provider_account_check(*, provider: str) -> AccountCheckReport:
    """Check one provider's account, store what it says, and lift its halt when the fault is gone."""
    now = timezone.now()
    try:
        instance = get_fulfillment_provider(provider)
    except ImproperlyConfigured as exc:
        logger.warning("Account of %s not checked: %s", provider, exc)
        return AccountCheckReport(provider, None, detail=str(exc))
    try:
        status = instance.check_account()
    except Exception as exc:  # noqa: BLE001 - a check that breaks must not stop the others
        logger.exception("Account check of %s raised", provider)
        status = AccountStatus(ok=False, message=f"The account check raised {type(exc).__name__}; see the worker log.")
    if status is not None:
        values = {"checked_at": now, "check_ok": status.ok, "check_message": status.message[:500]}
        if status.balance is not None:
            values.update(balance=status.balance, balance_checked_at=now)
        ProviderAccount.objects.update_or_create(provider=provider, defaults=values)

    halt = ProviderHalt.objects.filter(provider=provider).first()
    if halt is None:
        return AccountCheckReport(provider, status)
    if halt.clears_at and halt.clears_at <= now:
        reason = "the wait the provider asked for is over"
    elif status is not None and status.ok and status.balance is not None and is_deposit_halt(halt):
        # A deposit halt lifts as far as the balance covers the units waiting, oldest first.
        released = provider_release_by_deposit(provider=provider, balance=status.balance, source="the account check")
        if released is None:  # lifted meanwhile
            return AccountCheckReport(provider, status)
        detail = released.summary or status.message
        return AccountCheckReport(provider, status, halted=True, lifted=released.lifted, detail=detail)
    elif status is not None and type(instance).fault_cleared(
        code=halt.code, account=status, lowest_balance=halt.lowest_balance
    ):
        reason = f"the account check shows the fault gone ({status.message})"
    else:
        balance = status.balance if status is not None else None
        lowest = halt.lowest_balance
        if balance is not None and (lowest is None or balance < lowest):
            lowest = balance  # a later, higher balance is a top-up
        found = status.message if status is not None else "No account check for this provider: a probe tests it."
        ProviderHalt.objects.filter(pk=halt.pk).update(checked_at=now, check_result=found[:500], lowest_balance=lowest)
        return AccountCheckReport(provider, status, halted=True, detail=found)
    provider_resume(provider=provider, reason=reason)
    return AccountCheckReport(provider, status, halted=True, lifted=True, detail=reason)
