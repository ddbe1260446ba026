"""/healthz and /readyz: what load balancers and orchestrators probe."""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError, connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from kombu.exceptions import OperationalError as BrokerError

from fulfillment_site import health
from fulfillment_site.celery import app

pytestmark = pytest.mark.django_db

SECRET = "s3cret-Passw0rd"


def get(path: str, **extra):
    response = Client().get(path, **extra)
    return response, json.loads(response.content) if response.content else None


def use_broker(monkeypatch, url: str) -> None:
    # Celery reads CELERY_BROKER_URL from the environment before its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.setitem(app.conf, "broker_url", url)


class FakeBrokerConnection:
    """Stands in for kombu's connection: records how it was asked, refuses when told to."""

    def __init__(self, *, refuse: bool, calls: list) -> None:
        self.refuse, self.calls = refuse, calls

    def ensure_connection(self, **kwargs):
        self.calls.append(kwargs)
        if self.refuse:
            raise BrokerError(f"Error 111 connecting to redis://:{SECRET}@10.1.2.3:6379/0. Connection refused.")

    @property
    def default_channel(self):
        return object()

    def release(self):
        self.calls.append("released")


@pytest.fixture
def fake_broker(monkeypatch):
    """fake_broker(refuse=...) -> the calls: a network broker (Redis) answered by the fake."""
    calls: list = []

    def install(*, refuse: bool):
        use_broker(monkeypatch, f"redis://:{SECRET}@10.1.2.3:6379/0")
        monkeypatch.setattr(
            app,
            "connection_for_write",
            lambda **kwargs: calls.append(kwargs) or FakeBrokerConnection(refuse=refuse, calls=calls),
        )
        return calls

    return install


def test_healthz_answers_without_touching_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        response, body = get("/healthz")
    assert response.status_code == 200 and body == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_readyz_is_ready_when_database_broker_and_migrations_are(fake_broker):
    calls = fake_broker(refuse=False)

    response, body = get("/readyz")

    assert response.status_code == 200
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "broker": True,
        "migrations": True,
    }
    assert "released" in calls  # the probe's connection is given back every time


def test_readyz_with_the_configured_broker_of_this_run():
    # The test run's own broker: the embedded filesystem one, or Redis in the PostgreSQL + Redis pass.
    response, body = get("/readyz")
    assert response.status_code == 200, body
    assert body["checks"]["broker"]["ok"] is True


def test_broker_down_is_unavailable_and_says_so_without_the_url_or_password(fake_broker, settings):
    settings.HEALTH_CHECK_TIMEOUT_SECONDS = 1.5
    calls = fake_broker(refuse=True)

    response, body = get("/readyz")

    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"] == {"ok": False, "detail": "no connection (OperationalError)"}
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"]
    raw = response.content.decode()
    assert SECRET not in raw and "10.1.2.3" not in raw and "redis://" not in raw
    # Bounded: one attempt, no retry loop, the configured timeout for connecting and for Redis' socket.
    (opened, attempt) = calls[0], calls[1]
    assert opened["connect_timeout"] == 1.5
    assert opened["transport_options"]["socket_connect_timeout"] == 1.5
    assert attempt["max_retries"] == 0 and attempt["timeout"] == 1.5
    assert "released" in calls


def test_the_filesystem_broker_is_unavailable_when_its_folder_is_gone(monkeypatch, tmp_path):
    use_broker(monkeypatch, "filesystem://localhost//")
    gone = str(tmp_path / "gone")
    monkeypatch.setitem(app.conf, "broker_transport_options", {"data_folder_in": gone, "data_folder_out": gone})

    response, body = get("/readyz")

    assert response.status_code == 503
    assert body["checks"]["broker"]["ok"] is False and gone not in response.content.decode()


def test_a_pending_migration_makes_the_process_not_ready_and_is_named(fake_broker):
    fake_broker(refuse=False)
    recorder = MigrationRecorder(connection)
    app_label, name = max(key for key in recorder.applied_migrations() if key[0] == "orders")
    recorder.record_unapplied(app_label, name)  # as if the code were deployed before `migrate`

    response, body = get("/readyz")

    assert response.status_code == 503
    assert body["checks"]["migrations"] == {
        "ok": False,
        "detail": f"1 not applied: orders.{name}; run manage.py migrate",
    }


def test_database_down_is_unavailable_without_the_drivers_message(fake_broker, monkeypatch):
    fake_broker(refuse=False)

    def refuse(*args, **kwargs):
        raise OperationalError(f'connection to server at "10.9.8.7", port 5432 failed: password {SECRET}')

    monkeypatch.setattr(connection, "cursor", refuse)

    response, body = get("/readyz")

    assert response.status_code == 503
    assert body["checks"]["database"] == {"ok": False, "detail": "the query failed (OperationalError)"}
    assert body["checks"]["migrations"]["ok"] is False and "not checked" in body["checks"]["migrations"]["detail"]
    assert SECRET not in response.content.decode() and "10.9.8.7" not in response.content.decode()


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_pass_the_https_redirect_and_the_host_check(path, settings, fake_broker):
    # A load balancer probes the backend by its address, over plain HTTP.
    fake_broker(refuse=False)
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["shop.example.com"]

    response, _ = get(path, HTTP_HOST="10.0.0.12:8000")

    assert response.status_code == 200
    # Everything else still redirects and checks the host.
    assert Client().get("/api/products", HTTP_HOST="shop.example.com").status_code == 301


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_only_get_and_head(path):
    response = Client().post(path)
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
    assert Client().head(path).status_code in (200, 503)


def test_nothing_is_cached_between_probes(fake_broker):
    fake_broker(refuse=True)
    assert get("/readyz")[0].status_code == 503
    fake_broker(refuse=False)
    assert get("/readyz")[0].status_code == 200


def test_a_process_going_unready_logs_it_once_not_once_per_probe(fake_broker, caplog, monkeypatch):
    monkeypatch.setattr(health, "_last_ready", True)
    fake_broker(refuse=True)

    with caplog.at_level("INFO"):
        for _ in range(3):
            assert get("/readyz")[0].status_code == 503
        fake_broker(refuse=False)
        assert get("/readyz")[0].status_code == 200

    lines = [(r.levelname, r.name, r.getMessage()) for r in caplog.records]
    assert lines == [
        (
            "WARNING",
            "fulfillment_site.health",
            "Not ready (/readyz answers 503): broker: no connection (OperationalError)",
        ),
        ("INFO", "fulfillment_site.health", "Ready: database, broker and migrations pass"),
    ]


def test_a_broker_transport_that_cannot_load_is_a_503_not_a_500(monkeypatch):
    # As on a fresh install missing a package kombu's Redis transport imports.
    use_broker(monkeypatch, "redis://127.0.0.1:6379/0")

    def cannot_load(**kwargs):
        raise ModuleNotFoundError("No module named 'packaging'")

    monkeypatch.setattr(app, "connection_for_write", cannot_load)

    response, body = get("/readyz")

    assert response.status_code == 503
    assert body["checks"]["broker"] == {"ok": False, "detail": "no connection (ModuleNotFoundError)"}
