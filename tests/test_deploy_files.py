"""The deployment files (Procfile, deploy/systemd, compose.yaml, Dockerfile) start what exists,
the same way everywhere, with exactly one beat; the systemd units pass `systemd-analyze verify`.

Read here, on any machine; tests/integration/test_container.py also builds the image and runs
it (compose.yaml's PostgreSQL and Redis images come from a registry and are not started).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from configparser import ConfigParser
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
WEB = "gunicorn -c gunicorn.conf.py fulfillment_site.wsgi"
WORKER = "celery -A fulfillment_site worker"
BEAT = "celery -A fulfillment_site beat"


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def unit(name: str) -> ConfigParser:
    parser = ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read(UNITS / name)
    return parser


def exec_start(name: str) -> list[str]:
    """The ExecStart= command lines of a unit (a oneshot may have several)."""
    return [line.split("=", 1)[1] for line in (UNITS / name).read_text().splitlines() if line.startswith("ExecStart=")]


def dockerfile_cmd() -> list[str]:
    import json

    (line,) = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    return json.loads(line[len("CMD ") :])


def runs_beat(command: str) -> bool:
    words = shlex.split(command)
    return "beat" in words or "--beat" in words or "-B" in words


# --- one web command, one worker, exactly one beat -----------------------------------------


def test_the_procfile_declares_release_web_worker_and_beat():
    processes = procfile()
    assert list(processes) == ["release", "web", "worker", "beat"]
    assert processes["web"] == WEB
    assert processes["worker"].startswith(WORKER) and not runs_beat(processes["worker"])
    assert processes["beat"].startswith(BEAT)
    assert processes["release"] == "python manage.py migrate --noinput && python manage.py collectstatic --noinput"


def test_every_web_command_is_the_same_gunicorn_line():
    services = compose()["services"]
    web_unit = exec_start("fulfillment-web.service")
    assert web_unit == [f"/opt/fulfillment/.venv/bin/{WEB}"]
    assert " ".join(services["web"]["command"]) == WEB
    assert " ".join(dockerfile_cmd()) == WEB
    # gunicorn.conf.py holds the serving model (README, docs/operations.md); it is read from the
    # working directory the units and the image start in.
    assert unit("fulfillment-web.service")["Service"]["WorkingDirectory"] == "/opt/fulfillment"
    assert "WORKDIR /app" in (ROOT / "Dockerfile").read_text()


def test_workers_never_embed_beat_and_exactly_one_beat_is_declared():
    services = compose()["services"]
    commands = {name: " ".join(service.get("command", [])) for name, service in services.items()}
    beats = [name for name, command in commands.items() if runs_beat(command)]
    assert beats == ["beat"]
    assert services["beat"]["deploy"]["replicas"] == 1
    assert commands["worker"].startswith(WORKER)

    worker_units = [line for name in ("fulfillment-worker.service",) for line in exec_start(name)]
    assert len(worker_units) == 1 and not runs_beat(worker_units[0].replace("/opt/fulfillment/.venv/bin/", ""))
    (beat_line,) = exec_start("fulfillment-beat.service")
    assert beat_line.replace("/opt/fulfillment/.venv/bin/", "").startswith(BEAT)
    # The development runner embeds beat in its one worker; nothing production does.
    assert "--beat" in (ROOT / "scripts" / "run-dev.sh").read_text()


def test_the_release_step_migrates_before_anything_starts():
    services = compose()["services"]
    assert services["release"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["release"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
    release_unit = [
        line.replace("/opt/fulfillment/.venv/bin/", "") for line in exec_start("fulfillment-release.service")
    ]
    assert "python manage.py migrate --noinput" in release_unit
    assert "python manage.py collectstatic --noinput" in release_unit


def test_compose_runs_postgres_and_redis_and_every_service_has_a_healthcheck():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "release", "web", "worker", "beat"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name in ("postgres", "redis", "web", "worker", "beat"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    env = services["web"]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    assert env["DJANGO_DEBUG"] == "false" and env["LOG_FORMAT"] == "${LOG_FORMAT:-json}"


def test_the_image_installs_python_from_debian_and_runs_as_a_user():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=debian:bookworm", text, re.M)
    assert "FROM ${BASE_IMAGE}" in text
    assert "apt-get install" in text and "python3-venv" in text
    assert "pip install -r /tmp/requirements.txt" in text
    assert re.search(r"^USER app$", text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".git", ".venv", ".env", "var"} <= set(ignored)


# --- the commands they run exist ---------------------------------------------------------


def all_commands() -> list[str]:
    commands = list(procfile().values())
    app_services = [service for service in compose()["services"].values() if "build" in service]
    assert len(app_services) == 4  # release, web, worker, beat: one image
    commands += [" ".join(service["command"]) for service in app_services]
    for path in UNITS.glob("*.service"):
        commands += [line.replace("/opt/fulfillment/.venv/bin/", "") for line in exec_start(path.name)]
    return [part.strip() for command in commands for part in command.split("&&")]


def test_every_management_command_named_exists():
    from django.core.management import get_commands

    named = {shlex.split(c)[2] for c in all_commands() if c.startswith("python manage.py")}
    assert named >= {"migrate", "collectstatic"}
    assert named <= set(get_commands())


def test_every_celery_and_gunicorn_target_imports():
    import importlib

    from celery import Celery

    for command in all_commands():
        words = shlex.split(command)
        if words[0] == "celery":
            module = importlib.import_module(words[words.index("-A") + 1])
            assert isinstance(module.celery_app, Celery)
            assert words[words.index("-A") + 2] in ("worker", "beat")
        elif words[0] == "gunicorn":
            module_name, _, attribute = words[-1].partition(":")
            assert callable(getattr(importlib.import_module(module_name), attribute or "application"))


# --- systemd-analyze verify --------------------------------------------------------------


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        message = "systemd-analyze is not installed (Debian: apt-get install systemd)"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {message}", pytrace=False)
        pytest.skip(message)
    return tool


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    tool = systemd_analyze()
    # An alternate root holding the units, systemd's own units (targets they name) and a stand-in
    # for every program they run: verify checks that each ExecStart= program exists and is executable.
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    installed = root / "etc/systemd/system"
    installed.mkdir(parents=True)
    names = sorted(path.name for path in UNITS.iterdir())
    assert {"fulfillment-web.service", "fulfillment-worker.service", "fulfillment-beat.service"} <= set(names)
    for name in names:
        shutil.copy(UNITS / name, installed / name)
        for line in (UNITS / name).read_text().splitlines():
            if re.match(r"Exec(Start|StartPre|StartPost|Reload|Stop)=", line):
                program = root / shlex.split(line.split("=", 1)[1])[0].lstrip("-@:+!").lstrip("/")
                program.parent.mkdir(parents=True, exist_ok=True)
                program.write_text("#!/bin/sh\n")
                program.chmod(0o755)

    result = subprocess.run(
        [tool, "verify", "--man=no", f"--root={root}", *names], capture_output=True, text=True, timeout=120
    )

    # verify exits 0 on some warnings (an unknown key); any output is a finding.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path):
    tool = systemd_analyze()
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    broken = (UNITS / "fulfillment-beat.service").read_text().replace("Restart=always", "Restart=sometimes")
    (root / "etc/systemd/system/fulfillment-beat.service").write_text(broken)

    result = subprocess.run(
        [tool, "verify", "--man=no", f"--root={root}", "fulfillment-beat.service"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    output = result.stdout + result.stderr
    assert "restart" in output.lower() and "is not executable" in output  # celery is missing from this root
