"""The order page in the staff member's language, and every problem with its way out: the order's
number, the "what is wrong" box with only the actions that can help, held units said, nothing
offered that would be refused; the dashboard by urgency, the short menu, lifting a halt."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from fulfillment.models import Delivery, DeliveryStatus, ProductPause
from fulfillment.services import product_pause, provider_halt
from fulfillment_site.console.problems import URGENCY, problems_count

pytestmark = pytest.mark.django_db


def page_of(client, order, language: str = "en") -> str:
    response = client.get(reverse("admin:orders_order_change", args=[order.pk]), HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return response.content.decode()


def wrong_box(page: str) -> str:
    start = page.index('id="order-wrong"')
    return page[start : page.index("</section>", start)]


def test_the_russian_order_page_names_the_order_by_its_number_with_local_times_and_money(admin_client, failed_order):
    page = page_of(admin_client, failed_order, "ru")

    assert f"<title>Заказ {failed_order.public_id} |" in page
    assert f'Заказ <span class="mono">{failed_order.public_id}</span>' in page
    assert "Оплачен — 1 единица с ошибкой" in page
    assert "Что не так" in wrong_box(page) and "Wrong number." in wrong_box(page)
    assert "800,00 ₽" in page and "400,00 ₽" in page  # the amount, and each unit's price labelled
    assert "Цена за единицу" in page
    # Every time with seconds and its zone, day first in Russian.
    assert re.search(r"\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d МСК", page)
    assert "Хронология" in page and "Выдан" not in page.split('id="order-units"')[0].split("<h1>")[0]


def test_the_order_list_shows_the_public_id_and_finds_the_order_by_it(admin_client, failed_order):
    changelist = reverse("admin:orders_order_changelist")
    page = admin_client.get(changelist, HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert f'<span class="mono">{failed_order.public_id}</span>' in page
    assert "Выберите заказ для изменения" in page

    found = admin_client.get(f"{changelist}?q={failed_order.public_id}").content.decode()
    assert failed_order.public_id in found


def test_a_permanent_failure_offers_refund_with_its_amount_not_retry(admin_client, failed_order):
    box = wrong_box(page_of(admin_client, failed_order))

    assert "A retry will fail the same way" in box
    assert reverse("admin:orders_order_retry", args=[failed_order.pk]) not in box
    assert 'value="Refund this unit (400.00 ₽)…"' in box
    assert 'name="action" value="refund_undelivered_units"' in box


def test_a_retryable_failure_offers_retry_and_refund(admin_client, failed_order):
    Delivery.objects.filter(order=failed_order, status=DeliveryStatus.FAILED).update(failure_scope="retryable")
    box = wrong_box(page_of(admin_client, failed_order))

    assert "Fix the cause, then retry" in box
    assert reverse("admin:orders_order_retry", args=[failed_order.pk]) in box
    assert "Refund this unit (400.00 ₽)…" in box


def test_no_refund_is_offered_while_a_unit_is_still_in_progress(admin_client, failed_order):
    Delivery.objects.filter(order=failed_order, status=DeliveryStatus.DELIVERED).update(
        status=DeliveryStatus.WAITING, serial=""
    )
    box = wrong_box(page_of(admin_client, failed_order))

    # The refund decision refuses while a unit is being delivered: the page does not offer it.
    assert "Wrong number." in box and "refund_undelivered_units" not in box


def test_units_held_by_a_paused_product_are_said_with_their_way_out(admin_client, paid_order_factory):
    order = paid_order_factory(quantities=(2,))
    item = order.items.get()
    product_pause(provider="mock", sku=item.sku, code="out_of_stock", reason="Out of stock.")
    assert ProductPause.objects.count() == 1

    page = page_of(admin_client, order)

    assert page.count("held: product paused") == 2
    assert "2 units wait: their product (" in wrong_box(page) and "paused at the provider" in wrong_box(page)


def test_the_dashboard_lists_problems_most_urgent_first(admin_client, failed_order):
    provider_halt(provider="mock", code="41", reason="Signature rejected.")
    keys = [problem.key for problem in problems_count()]
    assert keys[: len(URGENCY)] == [key for key in URGENCY if key in keys]
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert page.index('id="problem-provider_halts"') < page.index('id="problem-failed_units"')
    assert page.index('id="problem-failed_units"') < page.index('id="problem-low_balance"')


def test_the_menu_starts_with_the_daily_lists_and_keeps_the_rest_under_more(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    menu = page[page.index('class="console-menu"') : page.index("</nav>", page.index('class="console-menu"'))]
    first, more = menu.split('class="console-more"')
    assert first.index("Dashboard") < first.index(reverse("admin:orders_order_changelist"))
    assert first.index(reverse("admin:orders_order_changelist")) < first.index(
        reverse("admin:orders_refund_changelist")
    )
    assert reverse("admin:fulfillment_deliveryattempt_changelist") in more


def test_a_halt_is_lifted_by_its_own_action_not_by_delete(admin_client):
    provider_halt(provider="mock", code="41", reason="Signature rejected.")
    changelist = reverse("admin:fulfillment_providerhalt_changelist")
    page = admin_client.get(changelist).content.decode()
    assert 'value="lift_halts"' in page and 'value="delete_selected"' not in page

    from fulfillment.models import ProviderHalt

    halt = ProviderHalt.objects.get()
    response = admin_client.post(changelist, {"action": "lift_halts", "_selected_action": [halt.pk]}, follow=True)
    assert response.status_code == 200
    assert not ProviderHalt.objects.exists()


def test_the_refund_confirmation_never_offers_zero(admin_client, paid_order_factory):
    order = paid_order_factory()  # its unit is waiting: nothing to refund yet
    response = admin_client.post(
        reverse("admin:orders_order_changelist"),
        {"action": "refund_undelivered_units", "_selected_action": [order.pk]},
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="confirm"' not in page and "Refund 0.00 ₽" not in page and 'id="total"' not in page
    assert "still being delivered" in page  # why there is nothing to refund
    assert page.count(">Refund undelivered units<") == 1  # the title, once


def test_a_staff_refund_is_in_the_timeline_once_and_in_the_admin_history(admin_client, failed_order, settings):
    from django.contrib.admin.models import LogEntry

    from orders.models import Payment, Refund

    Payment.objects.create(order=failed_order, payment_id="8742591", amount_kopecks=80000, bank_status="CONFIRMED")
    response = admin_client.post(
        reverse("admin:orders_order_changelist"),
        {"action": "refund_undelivered_units", "_selected_action": [failed_order.pk], "confirm": "1"},
        follow=True,
    )
    assert response.status_code == 200
    refund = Refund.objects.get(order=failed_order)

    timeline = page_of(admin_client, failed_order).split('id="order-timeline"')[1]
    assert timeline.count(f"Refund {refund.pk} of 400.00 ₽") == 1 and "admin" in timeline
    (entry,) = LogEntry.objects.filter(object_id=str(failed_order.pk))
    assert entry.user.username == "admin" and "refund" in entry.get_change_message().lower()


def test_staff_correct_a_refused_recipient_and_the_unit_is_bought_again(
    admin_client, failed_order, django_capture_on_commit_callbacks
):
    from django.contrib.admin.models import LogEntry

    from orders.models import OrderItem

    failed_unit = Delivery.objects.get(order=failed_order, status=DeliveryStatus.FAILED)
    item = failed_unit.item
    box = wrong_box(page_of(admin_client, failed_order))
    url = reverse("admin:orders_order_correct_recipient", args=[failed_order.pk])
    assert f"{url}?item={item.pk}" in box

    form = admin_client.get(f"{url}?item={item.pk}")
    assert form.status_code == 200 and item.recipient in form.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{url}?item={item.pk}", {"recipient": "087800009999"})

    assert response.status_code == 302
    assert OrderItem.objects.get(pk=item.pk).recipient == "087800009999"
    unit = Delivery.objects.get(pk=failed_unit.pk)
    assert unit.reference != failed_unit.reference and unit.purchase_no == failed_unit.purchase_no + 1
    assert unit.status == DeliveryStatus.DELIVERED  # eager Celery: bought again for the new recipient
    (entry,) = LogEntry.objects.filter(object_id=str(failed_order.pk))
    assert "087800001232 → 087800009999" in entry.get_change_message()  # the old value kept


def test_a_recipient_the_product_refuses_is_not_saved_and_the_form_says_why(
    admin_client, failed_order, product_factory
):
    from orders.models import OrderItem, Product

    item = Delivery.objects.get(order=failed_order, status=DeliveryStatus.FAILED).item
    Product.objects.filter(pk=item.product_id).update(
        recipient_label="Phone number", recipient_pattern=r"08[0-9]{8,11}"
    )
    url = reverse("admin:orders_order_correct_recipient", args=[failed_order.pk])

    response = admin_client.post(f"{url}?item={item.pk}", {"recipient": "not-a-number"})

    assert response.status_code == 200
    assert "&#x27;not-a-number&#x27; is not a valid Phone number (format: 08[0-9]{8,11})." in response.content.decode()
    assert OrderItem.objects.get(pk=item.pk).recipient == "087800001232"


def test_the_recipient_of_a_delivered_unit_cannot_change(failed_order):
    from orders.services.corrections import RecipientNotCorrectable, order_item_recipient_correct

    delivered = Delivery.objects.get(order=failed_order, status=DeliveryStatus.DELIVERED)
    with pytest.raises(RecipientNotCorrectable, match="nothing to correct"):
        order_item_recipient_correct(item_id=delivered.item_id, recipient="087800009999")
    Delivery.objects.filter(item_id=delivered.item_id).exclude(pk=delivered.pk).delete()
    Delivery.objects.filter(pk=delivered.pk).update(status=DeliveryStatus.FAILED)
    Delivery.objects.create(
        order=failed_order, item_id=delivered.item_id, unit_index=9, unit_key="x-9", reference="r-9", status="delivered"
    )
    with pytest.raises(RecipientNotCorrectable, match="cannot change"):
        order_item_recipient_correct(item_id=delivered.item_id, recipient="087800009999")


def test_a_refund_page_reads_as_money_not_as_a_dump(admin_client, failed_order):
    from orders.models import Payment, Refund

    payment = Payment.objects.create(order=failed_order, payment_id="8742591", amount_kopecks=80000)
    refund = Refund.objects.create(
        order=failed_order, payment=payment, amount_kopecks=40000, reason="staff", decided_by="anna", claim_token="t0k"
    )
    page = admin_client.get(reverse("admin:orders_refund_change", args=[refund.pk])).content.decode()
    assert "400.00 ₽" in page and failed_order.public_id in page
    assert "t0k" not in page and ">40000<" not in page  # no claim token, no kopecks


def test_orders_held_by_a_pause_or_a_halt_need_attention(admin_client, paid_order_factory, failed_order):
    held = paid_order_factory()
    other = paid_order_factory()
    product_pause(provider="mock", sku=held.items.get().sku, code="out_of_stock", reason="Out of stock.")
    changelist = reverse("admin:orders_order_changelist")

    page = admin_client.get(f"{changelist}?attention=held").content.decode()
    assert held.public_id in page and other.public_id not in page and failed_order.public_id not in page
    assert held.public_id in admin_client.get(f"{changelist}?attention=any").content.decode()

    provider_halt(provider="mock", code="41", reason="Signature rejected.")
    page = admin_client.get(f"{changelist}?attention=held").content.decode()
    assert held.public_id in page and other.public_id in page


def held_order(paid_order_factory, *, quantities=(2,)):
    """A PAID order of 2 × 250.00 ₽ whose units wait on a paused product, with its payment row."""
    from orders.models import Payment

    order = paid_order_factory(quantities=quantities, price=25000)
    Payment.objects.create(
        order=order, payment_id="8742591", amount_kopecks=order.amount_kopecks, bank_status="CONFIRMED"
    )
    product_pause(provider="mock", sku=order.items.first().sku, code="out_of_stock", reason="Out of stock.")
    return order


@pytest.mark.parametrize(
    ("language", "label"), [("en", "Stop and refund these 2 units (500.00 ₽)…"), ("ru", "500,00 ₽")]
)
def test_units_held_by_a_pause_offer_stop_and_refund_with_the_amount(admin_client, paid_order_factory, language, label):
    order = held_order(paid_order_factory)
    box = wrong_box(page_of(admin_client, order, language))

    assert 'name="include_held" value="1"' in box and label in box
    assert box.count("refund-held-button") == 1


def test_no_held_refund_is_offered_while_another_unit_is_being_bought(admin_client, paid_order_factory):
    order = held_order(paid_order_factory)
    first = Delivery.objects.filter(order=order).order_by("pk").first()
    Delivery.objects.filter(pk=first.pk).update(status=DeliveryStatus.PENDING, provider="mock")

    box = wrong_box(page_of(admin_client, order))
    assert "paused at the provider" in box and "include_held" not in box


def test_staff_stop_and_refund_held_units_from_the_order_page(admin_client, paid_order_factory):
    from orders.models import Refund

    order = held_order(paid_order_factory)
    changelist = reverse("admin:orders_order_changelist")
    form = {"action": "refund_undelivered_units", "_selected_action": [order.pk], "include_held": "1"}

    confirm_page = admin_client.post(changelist, form).content.decode()
    assert 'value="Refund 500.00 ₽"' in confirm_page and "stopped first" in confirm_page
    assert statuses_of(order) == ["waiting", "waiting"]  # nothing changes before staff confirm

    admin_client.post(changelist, {**form, "confirm": "1"}, follow=True)

    refund = Refund.objects.get(order=order)
    assert refund.amount_kopecks == 50000 and refund.decided_by == "admin"
    assert statuses_of(order) == ["refunding", "refunding"]
    assert all(unit.refund_id == refund.pk for unit in Delivery.objects.filter(order=order))


def test_the_list_action_lists_held_units_and_offers_to_include_them(admin_client, paid_order_factory):
    order = held_order(paid_order_factory, quantities=(1,))
    page = admin_client.post(
        reverse("admin:orders_order_changelist"), {"action": "refund_undelivered_units", "_selected_action": [order.pk]}
    ).content.decode()

    assert "waits for a paused product" in page and 'id="include-held"' in page
    assert 'name="confirm"' not in page  # nothing to refund until staff include the held unit


def statuses_of(order) -> list[str]:
    return list(Delivery.objects.filter(order=order).order_by("pk").values_list("status", flat=True))


def test_the_money_balance_reads_in_the_staff_member_s_language(admin_client, failed_order):
    page = page_of(admin_client, failed_order, "ru")
    assert "оплачено 800,00 ₽; выдано 400,00 ₽; возвращено 0,00 ₽" in page
    assert "paid 800" not in page
