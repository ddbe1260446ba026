"""Base view for endpoints called by machines (the bank, providers), not by people."""

from rest_framework.views import APIView


class SignedWebhookView(APIView):
    """POST-only, with no session, CSRF or throttling: each request proves itself by the
    signature its service checks (T-Bank Token, Digiflazz X-Hub-Signature)."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    http_method_names = ["post", "options"]
    # Machine endpoints are not part of the customer API's OpenAPI schema (README documents them).
    schema = None
