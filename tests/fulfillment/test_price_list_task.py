"""The periodic price-list sync: the beat pulls Digiflazz's list, so stock, cut-off windows and
prices follow the supplier, the products are repriced and repricing pauses move on."""

from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment.models import PauseKind, ProductPause, ProviderAccount
from fulfillment.supplier_catalog import SupplierSku
from fulfillment.tasks import sync_price_list
from fulfillment_site.celery import _schedule_periodic_tasks

pytestmark = pytest.mark.django_db


class _Beat:
    """Records what the Celery app would schedule."""

    def __init__(self) -> None:
        self.tasks: dict[str, float] = {}

    def signature(self, name: str) -> str:
        return name

    def add_periodic_task(self, seconds: float, signature: str, name: str = "") -> None:
        self.tasks[signature] = seconds


def test_the_task_pulls_the_list_and_moves_repricing_pauses_on(fake_digiflazz, product_factory):
    fake_digiflazz.list_sku("ml86", price=23000, unlimited_stock=False, stock=7)
    product = product_factory(sku="ml86", max_provider_price=24000)
    ProductPause.objects.create(provider="digiflazz", sku="ml86", kind=PauseKind.REPRICING, reason="rc 69")

    summary = sync_price_list()

    assert "1 SKUs in the price list" in summary
    assert SupplierSku.objects.get(code="ml86").stock == 7
    product.refresh_from_db()
    assert product.provider_price == 23000
    # No unit was held by the pause: it is lifted as soon as the products are repriced.
    assert not ProductPause.objects.exists()


def test_the_task_keeps_the_providers_five_minute_limit(fake_digiflazz):
    ProviderAccount.objects.create(provider="digiflazz", price_list_requested_at=timezone.now() - timedelta(minutes=2))

    summary = sync_price_list()

    assert "at most once per 5 minutes" in summary
    assert [path for path, _ in fake_digiflazz.calls] == []


def test_a_refused_pull_is_logged_not_raised(fake_digiflazz, caplog):
    fake_digiflazz.price_list_error = {"rc": "45", "message": "IP Anda tidak kami kenali"}

    summary = sync_price_list()

    assert "rc 45" in summary, summary
    assert "Price list sync failed" in caplog.text
    assert not SupplierSku.objects.exists()


@pytest.mark.parametrize(
    ("interval", "configured", "expected"),
    [(900, True, 900.0), (60, True, 300.0), (0, True, None), (900, False, None)],
)
def test_the_beat_syncs_only_a_configured_digiflazz_at_most_every_five_minutes(
    settings, interval, configured, expected
):
    settings.DIGIFLAZZ_SYNC_INTERVAL_SECONDS = interval
    settings.DIGIFLAZZ_USERNAME = "shopbuyer" if configured else ""
    settings.DIGIFLAZZ_API_KEY = "key" if configured else ""
    beat = _Beat()

    _schedule_periodic_tasks(beat)

    assert beat.tasks.get("fulfillment.sync_price_list") == expected
