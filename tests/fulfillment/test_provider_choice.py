"""A new purchase uses the provider chosen now; a purchase already made is checked where it was made."""

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.providers.base import FailureScope, FulfillmentResult
from fulfillment.services import fulfill_order
from tests.conftest import delivered_per_unit


def test_retry_after_a_final_failure_goes_to_the_provider_chosen_now(scripted_provider, paid_order_factory):
    order = paid_order_factory()
    sku = order.items.get().product.sku
    scripted_provider.script(sku, FulfillmentResult.failed(scope=FailureScope.RETRYABLE, code="X"))
    fulfill_order(order.pk)
    unit = Delivery.objects.get(order=order)
    assert (unit.status, unit.provider) == (DeliveryStatus.WAITING, "scripted")

    Delivery.objects.filter(pk=unit.pk).update(next_attempt_at=unit.created_at)
    report = fulfill_order(order.pk, provider="mock")
    unit.refresh_from_db()
    assert (unit.status, unit.provider) == (DeliveryStatus.DELIVERED, "mock")
    assert report.order_status == "fulfilled"
    assert delivered_per_unit() == {unit.unit_key: 1}
    assert len(scripted_provider.calls_for(sku)) == 1


def test_pending_purchase_is_checked_with_the_provider_that_made_it(scripted_provider, paid_order_factory):
    order = paid_order_factory()
    sku = order.items.get().product.sku
    scripted_provider.script(sku, FulfillmentResult.pending(code="03"))
    fulfill_order(order.pk)
    unit = Delivery.objects.get(order=order)
    Delivery.objects.filter(pk=unit.pk).update(next_attempt_at=unit.created_at)

    fulfill_order(order.pk, provider="mock")
    unit.refresh_from_db()
    assert (unit.status, unit.provider) == (DeliveryStatus.DELIVERED, "scripted")
    assert [kind for kind, _ in scripted_provider.calls_for(sku)] == ["fulfill", "check"]
    assert delivered_per_unit() == {}  # the Mock was never asked
