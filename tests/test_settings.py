"""The settings module read from a given environment: broker folders, the HTTPS switch."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest

SETTINGS_FILE = Path(__file__).resolve().parent.parent / "fulfillment_site" / "settings.py"


def load_settings(monkeypatch, **env: str) -> dict:
    """The names fulfillment_site/settings.py defines when run with `env` on top of a clean
    environment (no DJANGO_*, DATABASE_URL or CELERY_* leaking in from the test run)."""
    for key in list(os.environ):
        if key.startswith(("DJANGO_", "CELERY_", "DATABASE_", "TBANK_", "DIGIFLAZZ_", "VAR_DIR")):
            monkeypatch.delenv(key)
    env.setdefault("DJANGO_SECRET_KEY", "settings-test-key")
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
