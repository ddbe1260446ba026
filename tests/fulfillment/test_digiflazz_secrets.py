"""The Digiflazz API key (and the webhook secret) never reach logs, stored records, admin pages,
command output or exception messages, whatever happens."""

from __future__ import annotations

import json
import logging
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.forms.models import model_to_dict

from fulfillment.models import Delivery, DeliveryAttempt, ProviderAccount, ProviderHalt
from fulfillment.providers.digiflazz import DigiflazzClient, DigiflazzProvider
from fulfillment.registry import get_fulfillment_provider
from fulfillment.services import fulfill_order
from tests.conftest import DIGIFLAZZ_API_KEY, DIGIFLAZZ_WEBHOOK_SECRET

pytestmark = pytest.mark.django_db

WRONG_KEY = "wrong-key-SHOULD-NOT-LEAK-99"


def _stored_text() -> str:
    rows = [
        model_to_dict(row)
        for model in (Delivery, DeliveryAttempt, ProviderHalt, ProviderAccount)
        for row in model.objects.all()
    ]
    return json.dumps(rows, default=str)


def test_no_secret_anywhere_after_every_kind_of_outcome(
    fake_digiflazz, digiflazz_settings, digiflazz_order, post_digiflazz_callback, admin_client, caplog
):
    caplog.set_level(logging.DEBUG)
    out = StringIO()
    errors: list[str] = []

    fulfill_order(digiflazz_order(recipient="087800001230").pk)  # delivered
    fulfill_order(digiflazz_order(recipient="087800001232").pk)  # failed
    pending = digiflazz_order(recipient="087800001233")
    fulfill_order(pending.pk)  # pending, then a callback
    ref = Delivery.objects.get(order=pending).reference
    post_digiflazz_callback({"data": fake_digiflazz.settle(ref, status="Sukses", rc="00", sn="S1")})
    post_digiflazz_callback({"data": {"ref_id": ref}}, signature="sha1=bad")
    fake_digiflazz.interrupt_next("timeout", reached=True)
    fulfill_order(digiflazz_order(recipient="087800001230").pk)  # unknown outcome
    fake_digiflazz.interrupt_next("502")
    fulfill_order(digiflazz_order(recipient="087800001230").pk)
    fake_digiflazz.price_list = [{"buyer_sku_code": "xld10", "product_name": "XL", "price": 1}]
    call_command("digiflazz_balance", stdout=out)
    call_command("sync_digiflazz_products", stdout=out)

    # A wrong key: rc 41, a provider halt, and refusals from the operator tools.
    digiflazz_settings.DIGIFLAZZ_API_KEY = WRONG_KEY
    fulfill_order(digiflazz_order(recipient="087800001230").pk)
    assert ProviderHalt.objects.exists()
    try:
        call_command("digiflazz_balance", stdout=out)
    except CommandError as exc:
        errors.append(str(exc))
    digiflazz_settings.DIGIFLAZZ_USERNAME = ""
    try:
        get_fulfillment_provider()
    except ImproperlyConfigured as exc:
        errors.append(str(exc))
    errors.append(
        repr(DigiflazzProvider(DigiflazzClient(username="u", api_key=DIGIFLAZZ_API_KEY, base_url="https://x")))
    )

    pages = "".join(
        admin_client.get(url).content.decode()
        for url in (
            "/admin/fulfillment/deliveryattempt/",
            f"/admin/fulfillment/deliveryattempt/{DeliveryAttempt.objects.first().pk}/change/",
            "/admin/fulfillment/providerhalt/",
            "/admin/fulfillment/provideraccount/",
            f"/admin/orders/order/{pending.pk}/change/",
        )
    )
    assert DeliveryAttempt.objects.count() >= 7
    for secret in (DIGIFLAZZ_API_KEY, WRONG_KEY, DIGIFLAZZ_WEBHOOK_SECRET):
        assert secret not in _stored_text()
        assert secret not in caplog.text
        assert secret not in out.getvalue()
        assert secret not in " ".join(errors)
        assert secret not in pages
    # Signatures are derived from the key: they are not stored either.
    sent_signatures = {body["sign"] for _, body in fake_digiflazz.calls}
    assert not any(signature in _stored_text() for signature in sent_signatures)


def test_an_answer_echoing_the_key_is_scrubbed_before_storage(fake_digiflazz, digiflazz_order):
    fake_digiflazz.answer("0813", status="Gagal", rc="40", message=f"payload error near {DIGIFLAZZ_API_KEY}")
    order = digiflazz_order(recipient="0813")
    fulfill_order(order.pk)
    assert DIGIFLAZZ_API_KEY not in _stored_text()
    assert "[redacted]" in DeliveryAttempt.objects.get().message
