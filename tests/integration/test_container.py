"""The Dockerfile, built and run: on a Debian base image built here from Debian's packages
(debootstrap), with Debian's podman, the release step, web, worker and beat containers serve a
paid order end to end against the test's PostgreSQL and Redis, and compose.yaml's healthchecks
pass inside them.

Needs root, podman, runc and debootstrap (Debian: apt-get install podman runc debootstrap);
without them the test skips, or fails under REQUIRE_SERVICES=1 (.ci/run installs them). The
base image is built once per machine (`localhost/fulfillment-ci-base:bookworm`) and reused.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings

from tests.conftest import notification
from tests.integration.conftest import ROOT, free_port, wait_for_orders, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BASE_IMAGE = "localhost/fulfillment-ci-base:bookworm"
IMAGE = "localhost/fulfillment-ci:latest"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# runc, not podman's default crun: crun refuses a machine with both cgroup v1 and v2 mounted (this
# one). Limits are given explicitly: without CAP_SYS_RESOURCE the runtime cannot raise them to
# podman's defaults.
RUN = ["podman", "run", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
BUILD = ["podman", "build", "--runtime", "runc", "--network", "host"]
BUILD += ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def _engine_problem() -> str | None:
    if os.geteuid() != 0:
        return "building a base image with debootstrap needs root"
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (Debian: apt-get install podman runc debootstrap)"
    return None


def _run(args: list[str], *, timeout: float, what: str) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-4000:]}"
    return result


def _build_base_image(work: Path) -> None:
    """A minimal Debian bookworm from Debian's packages, trusting the CAs this machine trusts
    (a network that inspects TLS towards the package indexes needs its CA inside too)."""
    rootfs = work / "rootfs"
    _run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR], timeout=1200, what="debootstrap")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["podman", "import", "-", f"{BASE_IMAGE}-plain"], stdin=tar.stdout, capture_output=True, text=True, timeout=600
    )
    tar.wait(timeout=60)
    assert imported.returncode == 0, imported.stderr[-2000:]
    context = work / "base"
    (context / "local-ca").mkdir(parents=True)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", context / "ca-certificates.crt")
    for certificate in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(certificate, context / "local-ca" / certificate.name)
    (context / "Containerfile").write_text(
        f"FROM {BASE_IMAGE}-plain\n"
        "COPY local-ca/ /usr/local/share/ca-certificates/\n"
        "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
        "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt\n"
    )
    _run([*BUILD, "-t", BASE_IMAGE, str(context)], timeout=600, what="base image build")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    problem = _engine_problem()
    if problem:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {problem}", pytrace=False)
        pytest.skip(f"needs a container engine: {problem}")
    work = tmp_path_factory.mktemp("container")
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], timeout=60).returncode != 0:
        _build_base_image(work)
    context = ROOT
    if not (ROOT / "gunicorn.conf.py").exists():
        # The image runs gunicorn -c gunicorn.conf.py; until the serving model's file exists in
        # this tree, a copy of the tree gets a minimal one so the image can start.
        context = work / "context"
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
        for name in files:
            if (ROOT / name).is_file():
                (context / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, context / name)
        (context / "gunicorn.conf.py").write_text("workers = 2\nthreads = 4\n")
    _run([*BUILD, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", IMAGE, str(context)], timeout=1500, what="build")
    return IMAGE


class Containers:
    def __init__(self, stack) -> None:
        self.prefix = f"fulfillment-test-{os.getpid()}"
        self.names: list[str] = []
        self.env = {
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "container-test-secret-key-0123456789",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": stack.db_url,
            "DATABASE_POOL_MAX_SIZE": "4",
            "CELERY_BROKER_URL": stack.broker_url,
            "LOG_FORMAT": "json",
            "TBANK_TERMINAL_KEY": settings.TBANK_TERMINAL_KEY,
            "TBANK_PASSWORD": settings.TBANK_PASSWORD,
            "FULFILLMENT_PROVIDER": "mock",
            "MOCK_FULFILLMENT_DELAY_MIN": "0",
            "MOCK_FULFILLMENT_DELAY_MAX": "0.1",
            "MOCK_FULFILLMENT_SUCCESS_RATE": "1",
        }

    def _env_args(self, extra: dict[str, str]) -> list[str]:
        return [arg for key, value in {**self.env, **extra}.items() for arg in ("-e", f"{key}={value}")]

    def run_once(self, image: str, *command: str) -> subprocess.CompletedProcess:
        # Host network: the test's PostgreSQL and Redis listen on loopback.
        return _run(
            [*RUN, "--rm", "--network", "host", *self._env_args({}), image, *command], timeout=300, what=command
        )

    def start(self, role: str, image: str, *command: str, **extra: str) -> str:
        name = f"{self.prefix}-{role}"
        self.names.append(name)
        args = [*RUN, "-d", "--name", name, "--network", "host", *self._env_args(extra), image, *command]
        _run(args, timeout=120, what=f"start {role}")
        return name

    def exec(self, name: str, test: list[str]) -> subprocess.CompletedProcess:
        kind, *rest = test
        command = rest if kind == "CMD" else ["sh", "-c", rest[0].replace("$$", "$")]
        return subprocess.run(["podman", "exec", name, *command], capture_output=True, text=True, timeout=120)

    def logs(self, name: str) -> str:
        result = subprocess.run(["podman", "logs", name], capture_output=True, text=True, timeout=60)
        return result.stdout + result.stderr

    def close(self) -> None:
        for name in self.names:
            subprocess.run(["podman", "rm", "-f", "-t", "5", name], capture_output=True, timeout=120)


def test_the_image_serves_a_paid_order_end_to_end(image, stack, order_factory, request):
    containers = Containers(stack)
    request.addfinalizer(containers.close)
    port = free_port()
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]

    release = containers.run_once(image, *compose["release"]["command"])
    assert "No migrations to apply" in release.stdout  # pytest migrated the test database already

    web = containers.start("web", image, GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}")  # the image's CMD
    worker = containers.start("worker", image, *compose["worker"]["command"])
    beat = containers.start("beat", image, *compose["beat"]["command"])
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return requests.get(url + "/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    wait_until(
        ready, timeout=180, what="/readyz of the web container", interval=1, on_timeout=lambda: containers.logs(web)
    )
    checks = requests.get(url + "/readyz", timeout=5).json()["checks"]
    assert {name: check["ok"] for name, check in checks.items()} == {
        "database": True,
        "broker": True,
        "migrations": True,
    }
    assert requests.get(url + "/healthz", timeout=5).json() == {"status": "ok"}

    order = order_factory(quantities=(1, 2))
    response = requests.post(
        url + "/api/payments/tbank/notification",
        data=json.dumps(notification(order)),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert (response.status_code, response.text) == (200, "OK")
    wait_for_orders([order.pk], "fulfilled", timeout=180)

    # The worker container wrote JSON lines, the order's public id on those about it.
    lines = [json.loads(line) for line in containers.logs(worker).splitlines() if line.startswith("{")]
    assert any(line.get("order") == order.public_id and line["logger"] == "celery.app.trace" for line in lines)
    assert not any(line.get("order") not in (None, order.public_id) for line in lines)

    # compose.yaml's healthchecks pass inside the containers (the web one on this test's port).
    web_test = [part.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for part in compose["web"]["healthcheck"]["test"]]
    for name, test in ((web, web_test), (worker, compose["worker"]["healthcheck"]["test"])):
        result = containers.exec(name, test)
        assert result.returncode == 0, f"{name}: {shlex.join(test)}\n{result.stdout}{result.stderr}"

    def beat_healthy() -> bool:
        return containers.exec(beat, compose["beat"]["healthcheck"]["test"]).returncode == 0

    wait_until(
        beat_healthy, timeout=60, what="beat's schedule file", interval=1, on_timeout=lambda: containers.logs(beat)
    )
