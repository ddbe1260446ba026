"""Base view for endpoints called by machines (the bank, providers), not by people."""

from django.conf import settings
from django.http import HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView


class MachineContentNegotiation(BaseContentNegotiation):
    """Always the first renderer, whatever the client's Accept header says: a caller that asks
    for HTML gets JSON rather than a 406 refusal of a notification it meant to deliver."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"


# Form-encoded parameters of a request to these endpoints are signature material: error
# reports show none of them.
@method_decorator(sensitive_post_parameters(), name="dispatch")
class SignedWebhookView(APIView):
    """POST-only, with no session, CSRF or throttling: each request proves itself by the
    signature its service checks (T-Bank Token, Digiflazz X-Hub-Signature)."""

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    # Machines are answered in JSON (DRF's own errors, e.g. 405) or plain text (the views'):
    # never the browsable API page, which a browser would get with the view's docstring.
    renderer_classes = [JSONRenderer]
    content_negotiation_class = MachineContentNegotiation
    # Bodies are read raw (signatures cover the exact bytes), never through DRF's parsers.
    parser_classes: list = []
    http_method_names = ["post", "options"]
    # Machine endpoints are not part of the customer API's OpenAPI schema (README documents them).
    schema = None

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        # Refused before the body is read: nothing a machine sends us comes near the limit, and
        # a junk body is not worth reading, hashing or parsing. Django would read up to
        # DATA_UPLOAD_MAX_MEMORY_SIZE (and a Content-Length that is not a number made it fail).
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(declared)
        except ValueError:
            raise ParseError("Content-Length is not a number.") from None
        limit = settings.WEBHOOK_MAX_BODY_BYTES
        if size > limit:
            raise BodyTooLarge(f"The body is {size} bytes; this endpoint takes at most {limit}.")

    def options(self, request, *args, **kwargs) -> HttpResponse:
        # DRF's default answer describes the view (its name and docstring); the Allow header
        # (added by finalize_response) is all a client needs to know.
        return HttpResponse(status=200, content_type="text/plain; charset=utf-8")
