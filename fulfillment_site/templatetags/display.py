"""Template filters `money` and `moment` (fulfillment_site.display), loaded everywhere as builtins."""

from django import template

from fulfillment_site import display

register = template.Library()


@register.filter
def money(kopecks):
    """{{ order.amount_kopecks|money }} -> "1 100,00 ₽" in Russian."""
    return display.money(kopecks)


@register.filter
def moment(value):
    """{{ order.paid_at|moment }} -> "27.11.2026 22:02:13 МСК" in Russian."""
    return display.moment(value)
