"""The customer's email about a settled refund: its content, built in one place, ready for
translation (gettext). Sending is not done here: `orders.signals.refund_settled` is sent once a
refund is settled, and the email outbox connects to it (`refund_email_build(refund_id=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from fulfillment_site.display import money
from orders.models import Refund, RefundReason
from orders.refund_state import RefundState


@dataclass(frozen=True)
class RefundEmail:
    to: str
    subject: str
    text: str


def _roubles(kopecks: int) -> str:
    return money(kopecks)


def refund_email_build(*, refund_id: int) -> RefundEmail | None:
    """Subject and text telling the customer what was refunded and why; None when there is
    nothing to tell (the refund is not settled, or the order has no email address)."""
    refund = Refund.objects.select_related("order", "payment").filter(pk=refund_id).first()
    if refund is None or refund.state != RefundState.SUCCEEDED or not refund.order.customer_email:
        return None
    order = refund.order
    amount = _roubles(refund.amount_kopecks)
    subject = _("Refund of %(amount)s for order %(order)s") % {"amount": amount, "order": order.public_id}
    lines = [_("Hello,"), ""]
    if refund.reason == RefundReason.DOUBLE_PAYMENT:
        lines.append(
            _(
                "Order %(order)s was paid twice. We have returned the second payment, %(amount)s, to the card it "
                "came from. Your order is not affected."
            )
            % {"order": order.public_id, "amount": amount}
        )
    else:
        units = list(refund.units.select_related("item__product").order_by("item_id", "unit_index"))
        lines.append(
            _("We have returned %(amount)s for order %(order)s to the card you paid with.")
            % {"amount": amount, "order": order.public_id}
        )
        if units:
            lines.append(
                ngettext(
                    "This item could not be delivered and will not be:",
                    "These items could not be delivered and will not be:",
                    len(units),
                )
            )
            for unit in units:
                lines.append(
                    _("- %(name)s (%(recipient)s): %(price)s")
                    % {
                        "name": unit.item.product.name,
                        "recipient": unit.item.recipient,
                        "price": _roubles(unit.item.unit_price_kopecks),
                    }
                )
    lines += ["", _("Banks usually show a refund within a few days, at most 30."), ""]
    return RefundEmail(to=order.customer_email, subject=subject, text="\n".join(lines))
