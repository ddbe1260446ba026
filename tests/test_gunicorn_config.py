"""gunicorn.conf.py, the web process's settings: defaults, the environment, clear errors, and the
hooks that hand the thread count to Django and shorten the interpreter lock's switch interval."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

CONFIG = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"
VARIABLES = (
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_BIND",
    "PORT",
    "GUNICORN_TIMEOUT",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "GUNICORN_KEEPALIVE",
    "GUNICORN_BACKLOG",
    "WEB_SWITCH_INTERVAL_US",
)


@pytest.fixture
def config(monkeypatch):
    """config(**env) -> the settings gunicorn reads from the file with that environment."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def load(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(CONFIG))

    return load


def test_defaults_are_threaded_workers_one_per_core(config):
    settings = config()
    assert settings["worker_class"] == "gthread"
    assert settings["workers"] == max(2, os.cpu_count() or 1)
    assert settings["threads"] == 32
    assert settings["bind"] == ["0.0.0.0:8000"]
    assert (settings["timeout"], settings["graceful_timeout"], settings["keepalive"]) == (30, 30, 5)


def test_the_environment_sets_processes_threads_and_address(config):
    settings = config(WEB_CONCURRENCY="3", GUNICORN_THREADS="8", PORT="9000")
    assert (settings["workers"], settings["threads"], settings["bind"]) == (3, 8, ["0.0.0.0:9000"])
    assert config(GUNICORN_BIND="127.0.0.1:8100")["bind"] == ["127.0.0.1:8100"]


@pytest.mark.parametrize("value", ["many", "0", "-2"])
def test_a_bad_number_stops_the_server_with_the_variable_named(config, value):
    with pytest.raises(SystemExit) as stopped:
        config(GUNICORN_THREADS=value)
    assert f"GUNICORN_THREADS={value!r}" in str(stopped.value) and "32" in str(stopped.value)


def test_the_thread_count_in_use_reaches_the_workers_settings(config, monkeypatch):
    settings = config(GUNICORN_THREADS="32")
    settings["on_starting"](SimpleNamespace(cfg=SimpleNamespace(threads=12)))  # `--threads 12` on the command line
    assert os.environ["GUNICORN_THREADS"] == "12"


def test_each_worker_shortens_the_switch_interval(config):
    settings = config(WEB_SWITCH_INTERVAL_US="2000")
    before = sys.getswitchinterval()
    try:
        settings["post_worker_init"](SimpleNamespace())
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)
