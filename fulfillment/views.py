"""Provider callbacks: thin views over the provider's protocol code and fulfillment.services."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import JsonResponse

from fulfillment.providers.digiflazz import CallbackRejected, DigiflazzProvider, callback_parse
from fulfillment.services import delivery_check_soon, delivery_resolve_by_reference
from fulfillment_site.webhooks import SignedWebhookView

logger = logging.getLogger(__name__)


class DigiflazzCallbackView(SignedWebhookView):
    """POST /api/fulfillment/digiflazz/callback: Digiflazz reports a transaction's state.

    Answers: 200 for every callback taken in, whether it changed a unit, was a duplicate, named
    an unknown ref_id, was still pending or was the webhook's ping (Digiflazz has nothing to
    resend then); 403 for a missing or wrong X-Hub-Signature when DIGIFLAZZ_WEBHOOK_SECRET is
    set (without a secret nothing in a callback is trusted: it only queues a status check);
    400 for a body that is not a Digiflazz callback; 503 when the database is unavailable
    (nothing was changed). The raw body is read, not DRF's parsed data: the signature covers
    the bytes exactly as sent.
    """

    def post(self, request, *args, **kwargs) -> JsonResponse:
        try:
            event = callback_parse(
                body=request._request.body,
                signature=request.headers.get("X-Hub-Signature"),
                secret=settings.DIGIFLAZZ_WEBHOOK_SECRET,
            )
        except CallbackRejected as exc:
            logger.warning("Digiflazz callback rejected (%s): %s", exc.http_status, exc)
            return JsonResponse({"detail": str(exc)}, status=exc.http_status)
        if event.ping:
            return JsonResponse({"detail": "pong"})
        if event.result is None:
            logger.warning("Digiflazz callback for %s does not say how it went; ignored", event.ref_id)
            return JsonResponse({"detail": "nothing to apply"})
        try:
            if not settings.DIGIFLAZZ_WEBHOOK_SECRET:
                # Unsigned, so anyone could have sent it: take it only as a reason to ask Digiflazz.
                queued = delivery_check_soon(reference=event.ref_id, provider_name=DigiflazzProvider.name)
                return JsonResponse({"detail": "status check queued" if queued else "nothing to change"})
            applied = delivery_resolve_by_reference(
                reference=event.ref_id, result=event.result, provider_name=DigiflazzProvider.name
            )
        except DatabaseError:
            logger.exception("Database error while applying the Digiflazz callback for %s", event.ref_id)
            return JsonResponse({"detail": "temporarily unavailable, please retry"}, status=503)
        if not applied:
            logger.info(
                "Digiflazz callback for %s (%s) changed nothing: unknown ref_id, still pending or already settled",
                event.ref_id,
                event.result.outcome,
            )
        return JsonResponse({"detail": "applied" if applied else "nothing to change"})
