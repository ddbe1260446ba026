"""WSGI entry point; refuses to start with an invalid fulfillment configuration."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fulfillment_site.settings")

application = get_wsgi_application()

from fulfillment.registry import validate_provider_settings  # noqa: E402

validate_provider_settings()
