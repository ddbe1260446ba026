"""A provider's request to wait (Digiflazz rc 85: "retry after a minute") outlasts our backoff."""

from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.providers.base import FailureScope, FulfillmentResult
from fulfillment.providers.digiflazz import result_from_data
from fulfillment.services import fulfill_order


def test_digiflazz_rate_limit_asks_for_a_minute():
    result = result_from_data({"ref_id": "r1", "status": "Gagal", "rc": "85", "message": "limit"})
    assert result.failure_scope == FailureScope.SHOP  # the shop's account is rate limited, not the unit
    assert result.retry_after == 60.0


@pytest.mark.parametrize(("retry_after", "minimum"), [(None, 0), (600.0, 600)])
def test_retryable_failure_waits_at_least_what_the_provider_asked(
    scripted_provider, paid_order_factory, settings, retry_after, minimum
):
    settings.FULFILLMENT_RETRY_BASE_SECONDS = 1.0
    order = paid_order_factory()
    sku = order.items.get().product.sku
    scripted_provider.script(
        sku, FulfillmentResult.failed(scope=FailureScope.RETRYABLE, code="85", retry_after=retry_after)
    )
    before = timezone.now()
    fulfill_order(order.pk)
    unit = Delivery.objects.get(order=order)
    assert unit.status == DeliveryStatus.WAITING
    wait = unit.next_attempt_at - before
    assert wait >= timedelta(seconds=minimum)
    # Without a hint the engine's own backoff (base 1 s) applies, not the provider's minute.
    assert wait < timedelta(seconds=minimum + 2)
