"""Integration fixtures: the service as it runs in production, as real processes.

Each test gets the session's PostgreSQL test database (pytest-django's, shared with the worker
and web processes through DATABASE_URL), a flushed Redis broker database, and starts what it
needs: Celery workers (`celery worker --pool threads`, optionally with the embedded beat), a
gunicorn web server, `manage.py` commands. Everything listens on loopback only, every wait has
a deadline, and every process is killed (its whole process group) when the test ends.

Without PostgreSQL and Redis the tests skip with the command that runs them; with
REQUIRE_SERVICES=1 (CI) a missing service is a failure instead.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.db.models import Count

from fulfillment.models import Delivery, DeliveryStatus, MockLedgerEntry
from orders.models import Order
from tests.conftest import WEBHOOK_URL, notification

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOW_TO_RUN = (
    "Run with: DATABASE_URL=postgres://postgres@127.0.0.1:5432/fulfillment "
    "CELERY_BROKER_URL=redis://127.0.0.1:6379/15 make test"
)
PROCESS_START_TIMEOUT = 60.0


# --- skip / fail policy -----------------------------------------------------------------------


def _missing_services() -> list[str]:
    problems = []
    engine = settings.DATABASES["default"]["ENGINE"]
    if engine != "django.db.backends.postgresql":
        problems.append(f"the test database is {engine.rsplit('.', 1)[-1]}, not PostgreSQL (set DATABASE_URL)")
    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        problems.append(f"the Celery broker is {broker.split(':', 1)[0]}, not Redis (set CELERY_BROKER_URL)")
    else:
        import redis

        try:
            redis.Redis.from_url(broker, socket_timeout=2, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            problems.append(f"Redis at {broker} does not answer ({type(exc).__name__})")
    for program in ("celery", "gunicorn"):
        if not (BIN / program).exists():
            problems.append(f"{BIN / program} is missing (run `make install`)")
    return problems


_service_problems: list[str] | None = None


@pytest.fixture(autouse=True)
def _require_services() -> None:
    global _service_problems
    if _service_problems is None:
        _service_problems = _missing_services()
    if _service_problems:
        problems = "; ".join(_service_problems)
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {problems}. {HOW_TO_RUN}", pytrace=False)
        pytest.skip(f"needs PostgreSQL + Redis: {problems}. {HOW_TO_RUN}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# --- figures ------------------------------------------------------------------------------------

_figures: list[str] = []


@pytest.fixture
def report(request) -> Callable[..., None]:
    """report(key=value, ...): one line of figures for this test, shown at the end of the run."""

    def add(**figures) -> None:
        values = " ".join(f"{key}={value}" for key, value in figures.items())
        _figures.append(f"{request.node.name}: {values}")

    return add


def pytest_terminal_summary(terminalreporter) -> None:
    if _figures:
        terminalreporter.section("reliability figures (tests/integration)")
        for line in _figures:
            terminalreporter.write_line(line)


# --- waiting ------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.2, on_timeout=None):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f" ({on_timeout()})" if on_timeout else ""
            raise AssertionError(f"Timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


def delivery_status_counts(order_ids: Iterable[int] | None = None) -> dict[str, int]:
    qs = Delivery.objects.all() if order_ids is None else Delivery.objects.filter(order_id__in=list(order_ids))
    return {row["status"]: row["n"] for row in qs.values("status").annotate(n=Count("id"))}


def order_status_counts(order_ids: Iterable[int]) -> dict[str, int]:
    qs = Order.objects.filter(pk__in=list(order_ids)).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in qs}


def wait_for_orders(order_ids: list[int], status: str, *, timeout: float) -> None:
    wait_until(
        lambda: Order.objects.filter(pk__in=order_ids).exclude(status=status).count() == 0,
        timeout=timeout,
        what=f"{len(order_ids)} order(s) to become {status}",
        interval=0.5,
        on_timeout=lambda: f"orders {order_status_counts(order_ids)}, units {delivery_status_counts(order_ids)}",
    )


# --- the Mock provider's ledger: what was really bought -----------------------------------------


@dataclass(frozen=True)
class Ledger:
    delivered_per_unit: dict[str, int]
    entries: int
    failed_entries: int


def ledger() -> Ledger:
    rows = MockLedgerEntry.objects.filter(outcome="delivered").values("unit_key").annotate(n=Count("id"))
    return Ledger(
        delivered_per_unit={row["unit_key"]: row["n"] for row in rows},
        entries=MockLedgerEntry.objects.count(),
        failed_entries=MockLedgerEntry.objects.filter(outcome="failed").count(),
    )


def assert_delivered_exactly_once(order_ids: list[int]) -> Ledger:
    """Every unit of these orders was delivered by the provider exactly once, and the unit's
    current reference is the purchase that delivered it."""
    units = dict(Delivery.objects.filter(order_id__in=order_ids).values_list("unit_key", "reference"))
    assert units, "the orders have no units"
    book = ledger()
    counts = {key: book.delivered_per_unit.get(key, 0) for key in units}
    wrong = {key: n for key, n in counts.items() if n != 1}
    assert not wrong, (
        f"{len(wrong)} unit(s) not delivered exactly once (unit_key: deliveries): {dict(list(wrong.items())[:10])}"
    )
    delivered_refs = dict(
        MockLedgerEntry.objects.filter(unit_key__in=list(units), outcome="delivered").values_list(
            "unit_key", "reference"
        )
    )
    assert delivered_refs == units, "a unit's reference is not the purchase the provider delivered"
    assert not Delivery.objects.filter(order_id__in=order_ids).exclude(status=DeliveryStatus.DELIVERED).exists()
    return book


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log()))

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (celery's beat, gunicorn's workers)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace: float = 5.0) -> None:
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # Children outlive a parent that exited on SIGTERM only when something is wrong; be sure.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


@dataclass
class Web:
    proc: Proc
    url: str
    session: requests.Session = field(default_factory=requests.Session)

    def post_notification(self, payload: dict | bytes, *, session: requests.Session | None = None, timeout=30.0):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return (session or self.session).post(
            self.url + WEBHOOK_URL, data=body, headers={"Content-Type": "application/json"}, timeout=timeout
        )

    def notify(self, order: Order, status: str = "CONFIRMED", *, timeout=30.0, **extra) -> requests.Response:
        return self.post_notification(notification(order, status=status, **extra), timeout=timeout)


class Stack:
    """The processes of one test, on the test database and a flushed Redis database."""

    def __init__(self, tmp_path: Path) -> None:
        import redis

        self.tmp_path = tmp_path
        self.procs: list[Proc] = []
        self.broker_url = settings.CELERY_BROKER_URL
        self.redis = redis.Redis.from_url(self.broker_url, socket_timeout=10)
        self.redis.flushdb()
        db = connection.settings_dict
        auth = quote(db["USER"] or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        self.db_url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        self.db_name = db["NAME"]

    def env(self, *, app: str = "", **overrides) -> dict[str, str]:
        """Environment of a service process: production settings on the test database."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "DJANGO_"))}
        db_url = self.db_url + (f"?application_name={app}" if app else "")
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "fulfillment_site.settings",
                "DJANGO_SECRET_KEY": "integration-test-secret-key",
                "DJANGO_DEBUG": "false",
                "DATABASE_URL": db_url,
                "DATABASE_POOL_MAX_SIZE": "8",
                "CELERY_BROKER_URL": self.broker_url,
                "CELERY_TASK_ALWAYS_EAGER": "false",
                "VAR_DIR": str(self.tmp_path / "var"),
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                "TBANK_TERMINAL_KEY": settings.TBANK_TERMINAL_KEY,
                "TBANK_PASSWORD": settings.TBANK_PASSWORD,
                "TBANK_ALLOWED_NETWORKS": "",
                "FULFILLMENT_PROVIDER": "mock",
                "FULFILLMENT_EXTRA_PROVIDERS": "flaky=tests.integration.providers.FlakyProvider",
                "FULFILLMENT_MAX_PURCHASE_ATTEMPTS": "5",
                "FULFILLMENT_RETRY_BASE_SECONDS": "1",
                "FULFILLMENT_RETRY_MAX_SECONDS": "5",
                "FULFILLMENT_CLAIM_SECONDS": "300",
                "FULFILLMENT_STALE_AFTER_SECONDS": "30",
                "FULFILLMENT_RECONCILE_INTERVAL_SECONDS": "1",
                "MOCK_FULFILLMENT_DELAY_MIN": "0.05",
                "MOCK_FULFILLMENT_DELAY_MAX": "0.2",
                "MOCK_FULFILLMENT_SUCCESS_RATE": "1.0",
                "MOCK_FULFILLMENT_PENDING_RATE": "0",
            }
        )
        env.pop("MOCK_FULFILLMENT_SEED", None)
        env.update({key: str(value) for key, value in overrides.items()})
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        log_path = self.tmp_path / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def start_worker(self, name: str = "w1", *, concurrency: int = 8, beat: bool = False, **env) -> Proc:
        args = [str(BIN / "celery"), "-A", "fulfillment_site", "worker", "--pool", "threads"]
        args += ["--concurrency", str(concurrency), "-l", "INFO", "-n", f"{name}@%h", "--without-mingle"]
        args += ["--without-gossip"]
        if beat:
            args += ["-B", "-s", str(self.tmp_path / f"beat-{name}")]
        proc = self._spawn(name, args, self.env(app=f"it-{name}", **env))
        wait_until(
            lambda: " ready." in proc.log() or not proc.alive(),
            timeout=PROCESS_START_TIMEOUT,
            what=f"worker {name} to start",
            on_timeout=lambda: proc.log()[-2000:],
        )
        assert proc.alive(), f"worker {name} exited at startup:\n{proc.log()[-3000:]}"
        return proc

    def start_web(self, name: str = "web", **env) -> Web:
        port = free_port()
        # The production command (gunicorn.conf.py), smaller: 2 processes x 8 threads.
        args = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "fulfillment_site.wsgi"]
        args += ["-b", f"127.0.0.1:{port}", "-w", "2", "--threads", "8", "--timeout", "60", "--graceful-timeout", "5"]
        args += ["--access-logfile", "-"]
        proc = self._spawn(name, args, self.env(app=f"it-{name}", **env))
        web = Web(proc, f"http://127.0.0.1:{port}")

        def up() -> bool:
            if not proc.alive():
                return True
            try:
                return requests.get(web.url + "/admin/login/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout=PROCESS_START_TIMEOUT, what="gunicorn to answer", on_timeout=lambda: proc.log()[-2000:])
        assert proc.alive(), f"gunicorn exited at startup:\n{proc.log()[-3000:]}"
        return web

    def manage(self, name: str, *args: str, **env) -> Proc:
        """Start `manage.py ARGS` in the background (wait with .popen.wait())."""
        return self._spawn(name, [sys.executable, "manage.py", *args], self.env(app=f"it-{name}", **env))

    def queue_length(self) -> int:
        return int(self.redis.llen("celery"))

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.redis.flushdb()
        self.redis.close()

    def logs(self) -> str:
        return "\n".join(f"----- {proc.name} (pid {proc.pid}) -----\n{proc.log()[-6000:]}" for proc in self.procs)


@pytest.fixture
def stack(request, transactional_db, tmp_path) -> Stack:
    """Real processes against the test database. Requesting transactional_db makes the test's
    writes visible to them, and tears the processes down before the database is flushed."""
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.close()
        failed = any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))
        if failed:
            request.node.add_report_section("teardown", "service process logs", stack.logs())


def units_of(order_ids: list[int]) -> int:
    return Delivery.objects.filter(order_id__in=order_ids).count()


def run_threads(targets: list[Callable[[], object]], *, timeout: float) -> list[object]:
    """Run callables at the same moment on threads; return their results (exceptions re-raised)."""
    results: list[object] = [None] * len(targets)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def run(index: int, target: Callable[[], object]) -> None:
        from django.db import connection as thread_connection

        try:
            barrier.wait(timeout=timeout)
            results[index] = target()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run, args=(i, t), daemon=True) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), f"a thread did not finish within {timeout}s"
    if errors:
        raise errors[0]
    return results
