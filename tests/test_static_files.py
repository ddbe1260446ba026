"""Static files in production (DEBUG off): collected by `collectstatic`, served by WhiteNoise
from the WSGI process, so the admin is styled under gunicorn without a separate file server.
tests/integration/test_production_web.py checks the same through a real gunicorn."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client


@pytest.fixture
def collected(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    settings.DEBUG = False
    settings.WHITENOISE_AUTOREFRESH = False  # production: the files are indexed once, at startup
    call_command("collectstatic", "--noinput", verbosity=0)
    return settings.STATIC_ROOT


@pytest.mark.django_db
def test_the_admin_css_is_served_with_debug_off(collected):
    client = Client()  # a new client builds the middleware after collectstatic, as a new process would
    login = client.get("/admin/login/")
    stylesheets = re.findall(r'<link rel="stylesheet" href="(/static/[^"]+\.css)"', login.content.decode())
    assert "/static/admin/css/base.css" in stylesheets

    for href in stylesheets:
        response = client.get(href)
        assert response.status_code == 200, href
        assert response["Content-Type"].startswith("text/css")
        assert b"".join(response.streaming_content)


@pytest.mark.django_db
def test_compressed_copies_are_collected_and_served(collected):
    assert (collected / "admin" / "css" / "base.css.gz").exists()
    response = Client().get("/static/admin/css/base.css", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
