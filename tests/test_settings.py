"""The settings module read from a given environment: broker folders, the HTTPS switch, and
`manage.py check --deploy` on a production configuration."""

from __future__ import annotations

import os
import runpy
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

SETTINGS_FILE = Path(__file__).resolve().parent.parent / "fulfillment_site" / "settings.py"


def load_settings(monkeypatch, **env: str) -> dict:
    """The names fulfillment_site/settings.py defines when run with `env` on top of a clean
    environment (no DJANGO_*, DATABASE_URL or CELERY_* leaking in from the test run)."""
    for key in list(os.environ):
        if key.startswith(("DJANGO_", "CELERY_", "DATABASE_", "TBANK_", "DIGIFLAZZ_", "VAR_DIR")):
            monkeypatch.delenv(key)
    env.setdefault("DJANGO_SECRET_KEY", "settings-test-key")
    env.setdefault("DJANGO_IGNORE_DOTENV", "1")  # a developer's .env is not part of what is tested
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(SETTINGS_FILE))


def test_every_filesystem_broker_folder_is_under_var_dir(monkeypatch, tmp_path):
    var_dir = tmp_path / "var"
    loaded = load_settings(monkeypatch, VAR_DIR=str(var_dir), CELERY_BROKER_URL="filesystem://localhost//")
    options = loaded["CELERY_BROKER_TRANSPORT_OPTIONS"]

    folders = {name: Path(value) for name, value in options.items() if "folder" in name}
    # kombu's filesystem transport writes these four; any one left unset is relative to the cwd.
    assert set(folders) == {"data_folder_in", "data_folder_out", "processed_folder", "control_folder"}
    for name, folder in folders.items():
        assert folder.is_absolute() and folder.is_relative_to(var_dir), (name, folder)
        assert folder.is_dir(), name


def test_the_filesystem_broker_writes_nothing_outside_var_dir(monkeypatch, tmp_path):
    # What a worker does at startup: bind a fanout exchange (the pidbox), which writes a
    # control file. It used to land in ./control, inside the repository.
    from kombu import Connection, Exchange, Queue

    var_dir, cwd = tmp_path / "var", tmp_path / "cwd"
    cwd.mkdir()
    options = load_settings(monkeypatch, VAR_DIR=str(var_dir), CELERY_BROKER_URL="filesystem://localhost//")[
        "CELERY_BROKER_TRANSPORT_OPTIONS"
    ]
    monkeypatch.chdir(cwd)

    with Connection("filesystem://", transport_options=options) as connection:
        exchange = Exchange("settings-test.pidbox", type="fanout")
        queue = Queue("settings-test", exchange=exchange)
        with connection.Producer() as producer:
            producer.publish({"ping": 1}, exchange=exchange, declare=[queue])

    assert list(cwd.iterdir()) == []
    assert (var_dir / "celery" / "control" / "settings-test.pidbox.exchange").exists()


@pytest.mark.parametrize("broker", ["redis://127.0.0.1:6379/0", "amqp://guest:guest@127.0.0.1:5672//"])
def test_server_brokers_have_no_folders(monkeypatch, tmp_path, broker):
    options = load_settings(monkeypatch, VAR_DIR=str(tmp_path), CELERY_BROKER_URL=broker)[
        "CELERY_BROKER_TRANSPORT_OPTIONS"
    ]
    assert not any("folder" in name for name in options)


# --- HTTPS --------------------------------------------------------------------------------------------


def test_https_is_off_by_default(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, VAR_DIR=str(tmp_path))
    assert (loaded["SECURE_SSL_REDIRECT"], loaded["SESSION_COOKIE_SECURE"], loaded["CSRF_COOKIE_SECURE"]) == (
        False,
        False,
        False,
    )
    assert (loaded["SECURE_HSTS_SECONDS"], loaded["SECURE_PROXY_SSL_HEADER"]) == (0, None)


def test_one_switch_turns_on_every_https_setting(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, VAR_DIR=str(tmp_path), DJANGO_HTTPS="true")
    assert loaded["SECURE_SSL_REDIRECT"] is True
    assert loaded["SESSION_COOKIE_SECURE"] is True
    assert loaded["CSRF_COOKIE_SECURE"] is True
    assert loaded["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert loaded["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert loaded["SECURE_HSTS_PRELOAD"] is True
    assert loaded["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")


def test_each_https_value_can_be_overridden(monkeypatch, tmp_path):
    loaded = load_settings(
        monkeypatch,
        VAR_DIR=str(tmp_path),
        DJANGO_HTTPS="true",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SESSION_COOKIE_SECURE="false",
        DJANGO_CSRF_COOKIE_SECURE="false",
        DJANGO_SECURE_HSTS_SECONDS="600",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
        DJANGO_SECURE_HSTS_PRELOAD="false",
        DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Ssl=on",
        DJANGO_SILENCED_SYSTEM_CHECKS="security.W021,security.W005",
    )
    assert [loaded[name] for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")] == [
        False,
        False,
        False,
    ]
    assert (loaded["SECURE_HSTS_SECONDS"], loaded["SECURE_HSTS_INCLUDE_SUBDOMAINS"]) == (600, False)
    assert loaded["SECURE_HSTS_PRELOAD"] is False
    assert loaded["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_SSL", "on")
    # Staff's own list first; the SQLite default database adds its covering-index note (below).
    assert loaded["SILENCED_SYSTEM_CHECKS"][:2] == ["security.W021", "security.W005"]
    # Without the switch, one value alone.
    alone = load_settings(monkeypatch, VAR_DIR=str(tmp_path), DJANGO_SECURE_HSTS_SECONDS="60")
    assert (alone["SECURE_HSTS_SECONDS"], alone["SECURE_SSL_REDIRECT"]) == (60, False)


@pytest.mark.parametrize("value", ["X-Forwarded-Proto", "=https", "X-Forwarded-Proto="])
def test_a_malformed_proxy_header_names_the_format(monkeypatch, tmp_path, value):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="X-Forwarded-Proto=https"):
        load_settings(monkeypatch, VAR_DIR=str(tmp_path), DJANGO_SECURE_PROXY_SSL_HEADER=value)


# --- manage.py check --deploy ---------------------------------------------------------------------


def _production_env(tmp_path, **overrides: str) -> dict[str, str]:
    """A production configuration: real-looking secrets, PostgreSQL and Redis URLs (check opens
    no connection), Digiflazz with its webhook secret; nothing inherited from the test run."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("DJANGO_", "DATABASE_", "CELERY_", "TBANK_", "DIGIFLAZZ_", "FULFILLMENT_", "MOCK_", "PYTEST", "VAR_DIR")
        )
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "fulfillment_site.settings",
            "DJANGO_IGNORE_DOTENV": "1",  # a developer's .env (from `make run`) is not production
            "DJANGO_DEBUG": "false",
            "DJANGO_HTTPS": "true",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "shop.example.com",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://shop.example.com",
            "VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": "postgres://shop:" + secrets.token_urlsafe(16) + "@127.0.0.1:5432/shop",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
            "TBANK_TERMINAL_KEY": "1700000000001",
            "TBANK_PASSWORD": secrets.token_urlsafe(16),
            "TBANK_ALLOWED_NETWORKS": "91.194.226.0/23,91.218.132.0/22,212.233.80.0/22",
            "FULFILLMENT_PROVIDER": "digiflazz",
            "DIGIFLAZZ_USERNAME": "shopbuyer",
            "DIGIFLAZZ_API_KEY": secrets.token_hex(16),
            "DIGIFLAZZ_WEBHOOK_SECRET": secrets.token_urlsafe(24),
        }
    )
    env.update(overrides)
    return env


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=SETTINGS_FILE.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_https_on_and_real_credentials(tmp_path):
    result = _check_deploy(_production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_names_what_is_missing_without_https(tmp_path):
    env = _production_env(tmp_path)
    del env["DJANGO_HTTPS"]
    result = _check_deploy(env)
    assert result.returncode != 0
    for check_id in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check_id in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [("TBANK_PASSWORD", "demo-password-change-me"), ("TBANK_TERMINAL_KEY", "DemoTerminal")],
)
def test_check_refuses_demo_tbank_credentials_with_debug_off(tmp_path, name, value):
    result = _check_deploy(_production_env(tmp_path, **{name: value}))
    assert result.returncode != 0
    assert "orders.E005" in result.stderr and name in result.stderr
    assert value not in result.stderr  # the message names the variable, not its value


def test_a_task_s_printed_output_is_logged_as_info_not_warning():
    # The development email backend prints each email from the worker; Celery logs stdout.
    from fulfillment_site.celery import app

    assert app.conf.worker_redirect_stdouts_level == "INFO"


def test_sqlite_development_runs_print_no_covering_index_warnings(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "PYTEST", "VAR_DIR"))
    }
    env.update({"DJANGO_SETTINGS_MODULE": "fulfillment_site.settings", "DJANGO_IGNORE_DOTENV": "1"})
    env.update({"DJANGO_DEBUG": "true", "VAR_DIR": str(tmp_path / "var")})
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=SETTINGS_FILE.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "W040" not in result.stdout + result.stderr


def test_only_sqlite_silences_the_covering_index_warning(monkeypatch, tmp_path):
    sqlite = load_settings(monkeypatch, VAR_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3")
    postgres = load_settings(monkeypatch, VAR_DIR=str(tmp_path), DATABASE_URL="postgres://shop@127.0.0.1:5432/shop")
    assert "models.W040" in sqlite["SILENCED_SYSTEM_CHECKS"]
    assert "models.W040" not in postgres["SILENCED_SYSTEM_CHECKS"]


def test_an_init_settle_window_shorter_than_the_bank_timeout_is_refused(monkeypatch, tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="TBANK_INIT_SETTLE_SECONDS"):
        load_settings(monkeypatch, VAR_DIR=str(tmp_path), TBANK_TIMEOUT_SECONDS="15", TBANK_INIT_SETTLE_SECONDS="5")
    assert load_settings(monkeypatch, VAR_DIR=str(tmp_path))["TBANK_INIT_SETTLE_SECONDS"] == 60.0


@pytest.mark.parametrize("value", ["abc", "0", "-0.01", "NaN", "inf"])
def test_a_fixed_rate_that_is_not_a_positive_number_stops_startup_with_the_fix(monkeypatch, value):
    with pytest.raises(ImproperlyConfigured, match="PRICING_FIXED_RATE must be a positive number"):
        load_settings(monkeypatch, PRICING_FIXED_RATE=value)


def test_a_fixed_rate_is_read_as_given(monkeypatch):
    assert load_settings(monkeypatch, PRICING_FIXED_RATE="0.0055")["PRICING_FIXED_RATE"] == "0.0055"
