"""The floor the webhook is measured against: the cheapest request doing the webhook's kind of work.

It parses the JSON body and inserts one PaymentNotification row, served by the same
server, middleware and database as the webhook, so webhook/floor isolates what the webhook
adds (verification, the order lock and update, unit creation, queueing the delivery). It
lives here rather than in orders because nothing in the shop uses it; it is routed only when
BENCHMARK_FLOOR_ENDPOINT is true.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orders.models import NotificationVerdict, PaymentNotification


@csrf_exempt
@require_POST
def floor_view(request: HttpRequest) -> HttpResponse:
    try:
        payload = json.loads(request.body)
    except ValueError:
        return HttpResponseBadRequest("The body is not JSON.", content_type="text/plain")
    if not isinstance(payload, dict):
        return HttpResponseBadRequest("The body must be a JSON object.", content_type="text/plain")
    # A plain insert of the same table the webhook writes; the body is not stored, because it
    # carries a Token and the floor does not redact (the webhook does).
    PaymentNotification.objects.create(
        order_ref=str(payload.get("OrderId", ""))[:100],
        bank_status=str(payload.get("Status", ""))[:40],
        verdict=NotificationVerdict.RECORDED,
        http_status=200,
        detail="benchmark floor",
    )
    return HttpResponse("OK", content_type="text/plain; charset=utf-8")
