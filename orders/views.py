"""The T-Bank payment notification webhook: a thin view over orders.services."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpResponse

from fulfillment_site.webhooks import SignedWebhookView
from orders.services import PaymentConfigurationError, payment_notification_process

logger = logging.getLogger(__name__)


def client_address(request) -> str | None:
    if settings.TBANK_TRUST_X_FORWARDED_FOR:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            # The rightmost entry is the one our proxy appended; the ones before it are the client's say.
            return forwarded.split(",")[-1].strip() or None
    return request.META.get("REMOTE_ADDR") or None


def _plain(body: str, status: int) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")


class TBankNotificationView(SignedWebhookView):
    """POST /api/payments/tbank/notification: answers `OK` (200) for every accepted notification.

    The body is read raw, not through DRF's parsers: the token covers numbers exactly as the
    bank wrote them, which a float-converting parser would change.
    """

    def post(self, request, *args, **kwargs) -> HttpResponse:
        try:
            outcome = payment_notification_process(body=request._request.body, remote_addr=client_address(request))
        except PaymentConfigurationError as exc:
            logger.error("Payment notification refused: %s", exc)
            return _plain("Payment notifications are not configured on this shop.", 503)
        except DatabaseError:
            # Nothing was committed (the notification and its effects share a transaction);
            # a non-OK answer makes the bank send it again later.
            logger.exception("Database error while processing a payment notification")
            return _plain("Temporarily unavailable, please retry.", 503)
        if outcome.http_status != 200:
            logger.warning("Payment notification rejected (%s): %s", outcome.http_status, outcome.detail)
        return _plain(outcome.response_body, outcome.http_status)
