"""/metrics: Prometheus exposition, closed to the public (METRICS_TOKEN and/or METRICS_ALLOWED_NETWORKS)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from fulfillment_site.console.metrics import DatabaseCollector
from fulfillment_site.networks import Network, address_in, networks_parse


def metrics_networks() -> list[Network]:
    """METRICS_ALLOWED_NETWORKS parsed; raises ImproperlyConfigured naming a bad entry."""
    try:
        return networks_parse(
            settings.METRICS_ALLOWED_NETWORKS, setting="METRICS_ALLOWED_NETWORKS", example="10.0.0.0/8"
        )
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from exc


def _token_ok(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    # Without a token or an allow-list the endpoint does not exist: metrics are never public by default.
    if not settings.METRICS_TOKEN and not settings.METRICS_ALLOWED_NETWORKS:
        raise Http404("Metrics are not enabled.")
    if settings.METRICS_TOKEN and not _token_ok(request):
        return HttpResponseForbidden("A valid bearer token is required.", content_type="text/plain")
    networks = metrics_networks()
    if networks and not address_in(request.META.get("REMOTE_ADDR"), networks):
        return HttpResponseForbidden("This address may not read metrics.", content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
