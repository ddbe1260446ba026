"""`make bench-scale`: the staff console, the reconciliation sweep and the webhook at a million orders.

1. Creates a throwaway PostgreSQL database (bench_scale, `--database-url`), migrates it and fills
   it inside PostgreSQL (bench/scale_data.py): 1M orders and items, ~1M units, ~2M attempts,
   2M payment notifications, one order with hundreds of attempts; then VACUUM ANALYZE. The
   baseline (bench_scale_base) gets the same data at 10,000 orders (`--baseline-orders`).
2. Serves each with gunicorn and measures, as a logged-in staff user over HTTP, every admin page
   staff use: the index, each list unfiltered and with every filter link the list offers (read
   from the page, so filters added later are measured too), order search by id, e-mail,
   PaymentId, unit reference and recipient, and the order page of the order with the most
   attempts. Each page is requested once unmeasured, then `--repeat` times: p50 and p95.
3. Runs the reconciliation sweep (fulfillment.services.paid_orders_reconcile) in-process, on both.
   Every page, search and the sweep is judged by its ratio to the same at the baseline (<= 2x),
   showing as many rows (a rare filter's page is full only at full size: it is judged against
   its list unfiltered at the baseline), and a page over it is measured again alternating with
   its baseline page, as both phases' weather differs: absolute times do not travel between
   machines; the absolute figures stay in the report.
4. Measures the webhook's throughput (distinct signed CONFIRMED notifications for NEW orders,
   bench/run.py's load generators) on this database and on an empty freshly-migrated one
   (bench_scale_empty), in alternating rounds: the target is a ratio, loaded / empty.
5. Prints the figures and a "Targets" block, explains (EXPLAIN ANALYZE) the slowest queries
   of the slowest pages and of the sweep, and writes everything to bench/results/ as JSON and
   Markdown (git-ignored). Exits 0 whatever the figures: it is a report.

Every database is dropped at the end, and every process it started is stopped, also on
error or Ctrl-C (`--keep-database` keeps the loaded one, and `--reuse-database` measures it
again without loading). Usage: `make bench-scale`, `.venv/bin/python bench/scale.py --quick`,
`--tiny` (CI), `--help` for the rest. docs/benchmarks.md ("Scale: a million orders") has the figures.
"""

from __future__ import annotations

import argparse
import atexit
import html.parser
import json
import math
import os
import re
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402  - after the path setup, like the rest of bench/
    LOOPBACK,
    PROCESSES,
    WEBHOOK_PATH,
    _fmt,
    _on_signal,
    cpu_snapshot,
    free_port,
    load_run,
    loadgen_choose,
    machine_description,
    redis_flush,
    services_ensure,
)

BIN = Path(sys.executable).parent
VAR = ROOT / "var" / "bench" / "scale"
RESULTS = ROOT / "bench" / "results"
#: Each page, search and the sweep at full size against the same at --baseline-orders, measured
#: in the same run: absolute times do not travel between machines (another 2-core machine here
#: was 3.2x slower at everything), ratios do.
BASELINE_RATIO_LIMIT = 2.0
WEBHOOK_TARGET_RATIO = 0.9
WEBHOOK_PRICE = 10000  # bench/fixtures.confirmed_bodies sends Amount 10000


# --- options ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load a million orders into a throwaway PostgreSQL database and measure the admin, the "
        "reconciliation sweep and the webhook on it."
    )
    parser.add_argument("--quick", action="store_true", help="20,000 orders and fewer repeats: a smoke run.")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="Sizes for CI (seconds, not figures): 300 orders against a 100-order baseline, one request per "
        "page, one short webhook round.",
    )
    parser.add_argument("--orders", type=int, help="Orders to load (full: 1,000,000; quick: 20,000).")
    parser.add_argument(
        "--baseline-orders",
        type=int,
        help="Orders of the baseline database, measured the same way in the same run; every page, search "
        "and the sweep is judged against it (full and quick: 10,000).",
    )
    parser.add_argument("--hot-attempts", type=int, help="Attempts of the order with the most (500).")
    parser.add_argument("--repeat", type=int, help="Measured requests per page (full: 7, quick: 3).")
    parser.add_argument(
        "--page-budget",
        type=float,
        default=12.0,
        help="Seconds per page: a slow page stops after 3 measured requests once they took this long.",
    )
    parser.add_argument("--sweep-runs", type=int, help="Measured reconciliation sweeps (full: 7, quick: 3).")
    parser.add_argument("--webhook-rounds", type=int, help="Alternating empty/loaded rounds (full: 5, quick: 1).")
    parser.add_argument("--webhook-seconds", type=float, help="Length of each webhook load (full: 5, quick: 2).")
    parser.add_argument("--webhook-concurrency", type=int, help="Webhook clients (16).")
    parser.add_argument(
        "--max-other-share",
        type=float,
        default=0.25,
        help="A webhook round during which other programs used more of the machine than this is measured again.",
    )
    parser.add_argument(
        "--webhook-retries",
        type=int,
        help="Repeats of a disturbed round, the least disturbed kept (full: 2, quick: 0).",
    )
    parser.add_argument("--gunicorn-workers", type=int, help="gunicorn worker processes, sync (4).")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto", help="Webhook load generator.")
    parser.add_argument(
        "--explain",
        type=int,
        help="Pages over target explained per group (a list with its filters, the searches...); 0: none.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_scale"),
        help="Throwaway database to create and load (its name must start with 'bench'); NAME_base is the "
        "baseline, NAME_empty the empty one. Each is dropped first if it exists, and at the end.",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        help="Dedicated Redis database for the broker (flushed before and after).",
    )
    parser.add_argument("--keep-database", action="store_true", help="Keep the loaded database at the end.")
    parser.add_argument(
        "--reuse-database",
        action="store_true",
        help="Measure an existing loaded database (from --keep-database) instead of loading a new one; it is "
        "dropped at the end unless --keep-database is given again.",
    )
    parser.add_argument("--skip-webhook", action="store_true", help="No webhook (and no empty database).")
    parser.add_argument("--skip-admin", action="store_true", help="No admin pages (the sweep and the webhook only).")
    parser.add_argument("--output", type=Path, help="JSON results file (default bench/results/scale-<time>.json).")
    parser.add_argument("--render", type=Path, help="Print a results JSON file as Markdown, and stop.")
    args = parser.parse_args(argv)
    # (full, quick, tiny) of every size left unset.
    defaults = {
        "orders": (1_000_000, 20_000, 300),
        "baseline_orders": (10_000, 10_000, 100),
        "hot_attempts": (500, 500, 120),
        "repeat": (7, 3, 1),
        "sweep_runs": (7, 3, 1),
        "webhook_rounds": (5, 1, 1),
        "webhook_seconds": (5.0, 2.0, 1.0),
        "webhook_retries": (2, 0, 0),
        "webhook_concurrency": (16, 16, 2),
        "gunicorn_workers": (4, 4, 2),
        "explain": (1, 1, 1),
    }
    column = 2 if args.tiny else 1 if args.quick else 0
    for name, values in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, values[column])
    if args.orders < 10:
        parser.error("--orders must be at least 10.")
    if not 10 <= args.baseline_orders < args.orders:
        parser.error(
            f"--baseline-orders ({args.baseline_orders:,}) must be at least 10 and fewer than --orders "
            f"({args.orders:,}): it is the small database the large one is judged against."
        )
    if args.repeat < 1 or args.sweep_runs < 1 or args.webhook_rounds < 1:
        parser.error("--repeat, --sweep-runs and --webhook-rounds must be at least 1.")
    for url in (args.database_url, args.redis_url):
        host = url.split("@")[-1].split("//")[-1].split(":")[0].split("/")[0]
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            parser.error(f"{url}: the benchmark only runs against services on loopback.")
    args.database_name = _database_name(args.database_url)
    if not args.database_name.startswith("bench"):
        parser.error(
            f"{args.database_url}: the database is dropped and recreated, so its name must start with 'bench' "
            "(for example bench_scale)."
        )
    args.empty_url = _with_database(args.database_url, f"{args.database_name}_empty")
    args.baseline_url = _with_database(args.database_url, f"{args.database_name}_base")
    return args


def _database_name(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


def _with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def _log(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


# --- databases -------------------------------------------------------------------------------


def _admin_connect(url: str):
    import psycopg

    return psycopg.connect(_with_database(url, "postgres"), autocommit=True)


def database_exists(url: str) -> bool:
    with _admin_connect(url) as conn:
        return bool(conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (_database_name(url),)).fetchone())


def database_create(url: str) -> None:
    """A fresh database (a leftover of an interrupted run is dropped first)."""
    from psycopg import sql

    name = _database_name(url)
    with _admin_connect(url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_drop(url: str) -> None:
    from psycopg import sql

    with _admin_connect(url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_database_name(url))))


def migrate(urls: list[str], env: dict[str, str]) -> None:
    """`manage.py migrate` on each database, side by side."""
    procs = []
    for url in urls:
        log = VAR / f"migrate-{_database_name(url)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        procs.append(
            PROCESSES.start(
                f"migrate {_database_name(url)}",
                [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
                env={**env, "DATABASE_URL": url},
                log=log,
            )
        )
    for url, proc in zip(urls, procs, strict=True):
        if proc.wait(timeout=600) != 0:
            raise SystemExit(f"migrate failed on {_database_name(url)}; see {VAR}/migrate-*.log.")
        PROCESSES.stop(proc)


@contextmanager
def pg_connect(url: str) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def data_load(args: argparse.Namespace, *, url: str, orders: int) -> dict[str, Any]:
    from django.db import connection

    from bench import scale_data

    sizes = scale_data.Sizes(orders=orders, hot_attempts=args.hot_attempts)
    _log(f"Loading {sizes.orders:,} orders into {_database_name(url)}")
    began = time.monotonic()
    with pg_connect(url) as pg:
        counts = scale_data.load(pg, sizes=sizes, t0=datetime.now(UTC), connection=connection, progress=_log)
        loaded_s = time.monotonic() - began
        _log("VACUUM ANALYZE (the visibility map and the planner's statistics, as a live database has them)")
        vacuum_began = time.monotonic()
        pg.execute("VACUUM (ANALYZE)")
        vacuum_s = time.monotonic() - vacuum_began
        size = pg.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    _log(f"Loaded in {loaded_s:.0f} s, vacuumed and analyzed in {vacuum_s:.0f} s; database size {size}")
    return {"rows": counts, "load_s": round(loaded_s, 1), "vacuum_s": round(vacuum_s, 1), "size": size}


def data_describe() -> dict[str, Any]:
    """Rows per table of the loaded database (also when it is reused), from the ORM."""
    from fulfillment.models import Delivery, DeliveryAttempt
    from orders.models import Order, OrderItem, PaymentNotification

    models = {
        "orders": Order,
        "order items": OrderItem,
        "units (deliveries)": Delivery,
        "attempts": DeliveryAttempt,
        "notifications": PaymentNotification,
    }
    return {label: model.objects.count() for label, model in models.items()}


# --- environment -----------------------------------------------------------------------------


def scale_environment(args: argparse.Namespace, database_url: str) -> dict[str, str]:
    """Settings for gunicorn and this process, set explicitly so that nothing comes from a .env."""
    return {
        "DJANGO_SETTINGS_MODULE": "fulfillment_site.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(VAR / "var"),
        "DATABASE_URL": database_url,
        "DATABASE_POOL": "true",
        "DATABASE_POOL_MIN_SIZE": "2",
        "DATABASE_POOL_MAX_SIZE": "20",
        "CELERY_BROKER_URL": args.redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "TBANK_TERMINAL_KEY": "BenchTerminal",
        "TBANK_PASSWORD": TBANK_PASSWORD,
        "TBANK_ALLOWED_NETWORKS": "",
        "TBANK_TRUST_X_FORWARDED_FOR": "false",
        "FULFILLMENT_PROVIDER": "mock",
        "FULFILLMENT_EXTRA_PROVIDERS": "",
        "BENCHMARK_FLOOR_ENDPOINT": "false",
    }


SECRET_KEY = secrets.token_urlsafe(40)
TBANK_PASSWORD = secrets.token_urlsafe(24)


def django_setup(env: dict[str, str]) -> None:
    # This process runs the sweep and the EXPLAINs on one plain connection, not a pool.
    os.environ.update({**env, "DATABASE_POOL": "false"})
    import django

    django.setup()
    import fulfillment_site.celery  # noqa: F401  - binds the tasks to the configured broker


def django_disconnect() -> None:
    from django.db import connections

    connections.close_all()


def database_use(url: str) -> None:
    """Point this process's ORM (the sweep, the search samples, the staff user) at another of the
    run's databases: they differ only in name, and this process holds no pool."""
    from django.db import connections

    connections.close_all()
    connections["default"].settings_dict["NAME"] = _database_name(url)


# --- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    label: str

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def gunicorn_start(args: argparse.Namespace, env: dict[str, str], *, label: str) -> Server:
    import requests

    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        "fulfillment_site.wsgi:application",
        "--bind",
        f"{LOOPBACK}:{port}",
        "--workers",
        str(args.gunicorn_workers),
        "--backlog",
        "2048",
        "--timeout",
        "120",
        "--log-level",
        "warning",
    ]
    log = VAR / f"gunicorn-{label}.log"
    proc = PROCESSES.start(f"gunicorn ({label})", command, env=env, log=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited at startup; see {log}.")
        try:
            if requests.get(f"http://{LOOPBACK}:{port}/admin/login/", timeout=5).status_code == 200:
                return Server(proc, port, label)
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within 60 s; see {log}.")


# --- the admin -------------------------------------------------------------------------------


def staff_user_create(password: str) -> str:
    """A superuser of the database the ORM points at: staff who may see every page."""
    from django.contrib.auth import get_user_model

    username = "bench-staff"
    user_model = get_user_model()
    user_model.objects.filter(username=username).delete()
    user_model.objects.create_superuser(username=username, email="bench-staff@example.com", password=password)
    return username


class AdminClient:
    """A staff member's browser, minus the browser: one keep-alive session through gunicorn."""

    def __init__(self, server: Server) -> None:
        import requests

        self.base = server.base
        self.session = requests.Session()
        # The report names filters by the admin's English headings ("By status"); the shop's
        # default language is Russian, so ask for English like a browser set to it would.
        self.session.headers["Accept-Language"] = "en"

    def login(self, username: str, password: str) -> None:
        from django.urls import reverse

        login = reverse("admin:login")
        page = self.session.get(self.base + login, timeout=30)
        token = _form_token(page.text)
        answer = self.session.post(
            self.base + login,
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": token,
                "next": reverse("admin:index"),
            },
            headers={"Referer": self.base + login},
            timeout=60,
            allow_redirects=False,
        )
        if answer.status_code != 302:
            raise SystemExit(f"Could not log in to the admin as {username} (HTTP {answer.status_code}).")

    def get(self, path: str) -> tuple[int, float, str]:
        began = time.perf_counter()
        response = self.session.get(self.base + path, timeout=300, allow_redirects=False)
        text = response.text
        return response.status_code, time.perf_counter() - began, text


def _form_token(page: str) -> str:
    class Finder(html.parser.HTMLParser):
        token = ""

        def handle_starttag(self, tag, attrs):
            values = dict(attrs)
            if tag == "input" and values.get("name") == "csrfmiddlewaretoken":
                self.token = values.get("value") or ""

    finder = Finder()
    finder.feed(page)
    if not finder.token:
        raise SystemExit("The admin login page has no CSRF token field.")
    return finder.token


class FilterLinks(html.parser.HTMLParser):
    """The links of a changelist's filter sidebar and of its date hierarchy, with their titles:
    whatever filters the ModelAdmin offers today, read the way a person sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (label, href)
        self._depth = 0  # inside nav#changelist-filter or nav.toplinks: nesting depth
        self._title = ""
        self._heading = False
        self._selected = False
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if self._depth:
            if tag == "nav":
                self._depth += 1
            elif tag == "details":
                self._title = (values.get("data-filter-title") or "").strip()
            elif tag in ("h3", "summary"):
                self._heading, self._text = True, []
            elif tag == "li":
                self._selected = "selected" in (values.get("class") or "").split()
            elif tag == "a" and not self._heading:
                self._href, self._text = values.get("href"), []
            return
        classes = (values.get("class") or "").split()
        if tag == "nav" and (values.get("id") == "changelist-filter" or "toplinks" in classes):
            self._depth = 1
            self._title = "date hierarchy" if "toplinks" in classes else ""

    def handle_endtag(self, tag):
        if not self._depth:
            return
        if tag == "nav":
            self._depth -= 1
        elif tag in ("h3", "summary") and self._heading:
            self._heading = False
            heading = " ".join("".join(self._text).split())
            if heading.startswith("By "):  # a filter's title ("By status"); other headings are actions
                self._title = heading.removeprefix("By ").strip()
        elif tag == "a" and self._href is not None:
            text = " ".join("".join(self._text).split())
            href = self._href
            if href and "?" in href and "_facets" not in href and not self._selected:
                self.links.append((f"{self._title or 'filter'} = {text or '(blank)'}", href))
            self._href = None
        elif tag == "li":
            self._selected = False

    def handle_data(self, data):
        if self._depth and (self._heading or self._href is not None):
            self._text.append(data)


def filter_links(page: str) -> list[tuple[str, str]]:
    finder = FilterLinks()
    finder.feed(page)
    seen, links = set(), []
    for label, href in finder.links:
        if href not in seen:
            seen.add(href)
            links.append((label, href))
    return links


def _percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: with 7 samples, p95 is the slowest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


_RESULT_ROWS = re.compile(r'id="result_list".*?<tbody[^>]*>(.*?)</tbody>', re.S)


def rows_shown(page: str) -> int | None:
    """How many result rows a changelist page shows (None for a page that is not a list)."""
    match = _RESULT_ROWS.search(page)
    return match.group(1).count("<tr") if match else None


def page_measure(
    admin: AdminClient,
    args: argparse.Namespace,
    *,
    kind: str,
    name: str,
    path: str,
    expect: str | None = None,
) -> tuple[dict[str, Any], str]:
    """One unmeasured request (its body is returned, for the filter links), then --repeat measured."""
    status, first, body = admin.get(path)
    row: dict[str, Any] = {"kind": kind, "name": name, "path": path, "status": status, "first_ms": first * 1000}
    if status != 200:
        row["error"] = f"HTTP {status}"
        _log(f"  {name}: HTTP {status} ({path})")
        return row, body
    if expect is not None:
        row["found"] = expect in body
    times: list[float] = []
    for _ in range(args.repeat):
        status, seconds, _ = admin.get(path)
        if status != 200:
            row["status"], row["error"] = status, f"HTTP {status}"
            break
        times.append(seconds)
        if len(times) >= 3 and sum(times) > args.page_budget:
            break
    if times:
        row.update(
            n=len(times),
            p50_ms=statistics.median(times) * 1000,
            p95_ms=_percentile(times, 0.95) * 1000,
            bytes=len(body),
            rows=rows_shown(body),
        )
    found = "" if expect is None else (" found" if row.get("found") else " NOT FOUND")
    _log(f"  {name}: p50 {_fmt(row.get('p50_ms'), 0)} ms, p95 {_fmt(row.get('p95_ms'), 0)} ms{found}")
    return row, body


def search_samples() -> dict[str, Any]:
    """Values of one ordinary fulfilled order, three quarters into the table, to search for."""
    from fulfillment.models import Delivery
    from orders.models import Order, OrderItem
    from orders.state import OrderStatus

    last = Order.objects.order_by("-id").values_list("id", flat=True).first() or 1
    order = (
        Order.objects.filter(id__gte=last * 3 // 4, status=OrderStatus.FULFILLED)
        .exclude(customer_email="")
        .exclude(payment_id="")
        .order_by("id")
        .first()
    )
    if order is None:
        raise SystemExit("The loaded database has no fulfilled order to search for.")
    delivery = Delivery.objects.filter(order_id=order.pk).order_by("id").first()
    item = OrderItem.objects.filter(order_id=order.pk).order_by("id").first()
    return {
        "order_id": order.pk,
        "values": {
            "id": str(order.pk),
            "email": order.customer_email,
            "PaymentId": order.payment_id,
            "reference": delivery.reference if delivery else "",
            "recipient": item.recipient if item else "",
        },
    }


def hot_order() -> tuple[int, int]:
    """The order with the most attempts, and how many."""
    from django.db.models import Count

    from fulfillment.models import DeliveryAttempt

    row = (
        DeliveryAttempt.objects.values("order_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("order_id", "n")
        .first()
    )
    if row is None:
        raise SystemExit("The loaded database has no attempts.")
    return row


LISTS = (
    ("order list", "orders", "order"),
    ("notification list", "orders", "paymentnotification"),
    ("unit (delivery) list", "fulfillment", "delivery"),
    ("attempt list", "fulfillment", "deliveryattempt"),
)


def admin_measure(admin: AdminClient, args: argparse.Namespace) -> dict[str, Any]:
    from django.urls import NoReverseMatch, reverse

    pages: list[dict[str, Any]] = []
    _log("Admin index")
    row, _ = page_measure(admin, args, kind="page", name="admin index (dashboard)", path=reverse("admin:index"))
    pages.append(row)
    for label, app, model in LISTS:
        try:
            path = reverse(f"admin:{app}_{model}_changelist")
        except NoReverseMatch:
            pages.append({"kind": "page", "name": label, "path": "-", "status": None, "error": "not in the admin"})
            continue
        _log(f"{label[0].upper()}{label[1:]}, unfiltered and with each filter")
        row, body = page_measure(admin, args, kind="page", name=f"{label}, unfiltered", path=path)
        pages.append(row)
        # Relative ("?status__exact=paid") or absolute links to this list with a query; not the list itself.
        links = []
        for filter_label, href in filter_links(body):
            target = urllib.parse.urljoin(path, href)
            if target.startswith(path + "?") and target != path + "?":
                links.append((filter_label, target))
        row["filters"] = len(links)
        for filter_label, target in links:
            row, _ = page_measure(admin, args, kind="filter", name=f"{label}: {filter_label}", path=target)
            pages.append(row)
    samples = search_samples()
    order_list = reverse("admin:orders_order_changelist")
    expect = reverse("admin:orders_order_change", args=[samples["order_id"]])
    _log(f"Order search for the values of order {samples['order_id']}")
    for what, value in samples["values"].items():
        path = f"{order_list}?{urllib.parse.urlencode({'q': value})}"
        row, _ = page_measure(admin, args, kind="search", name=f"order search by {what}", path=path, expect=expect)
        row["query"] = value
        pages.append(row)
    order_id, attempts = hot_order()
    _log(f"Order page of order {order_id} ({attempts} attempts)")
    row, _ = page_measure(
        admin,
        args,
        kind="page",
        name=f"order page, {attempts} attempts",
        path=reverse("admin:orders_order_change", args=[order_id]),
    )
    pages.append(row)
    return {"pages": pages, "search_order": samples["order_id"], "hot_order": order_id, "hot_attempts": attempts}


@contextmanager
def other_programs_share(server: Server, database: str, into: dict[str, Any]) -> Iterator[None]:
    """The share of the machine that programs other than this benchmark, its server and its
    database used meanwhile (into["other_cpu_share"]): a busy neighbour shows here."""

    def snapshot() -> dict[str, float]:
        figures = cpu_snapshot({"server": [server.proc.pid]}, database)
        own = resource.getrusage(resource.RUSAGE_SELF)
        figures["this process"] = own.ru_utime + own.ru_stime
        return figures

    before, began = snapshot(), time.monotonic()
    yield
    after, wall = snapshot(), time.monotonic() - began
    ours = sum(after[key] - before[key] for key in before if key != "machine")
    other = max(0.0, after["machine"] - before["machine"] - ours)
    into["other_cpu_share"] = round(other / ((os.cpu_count() or 1) * wall), 3) if wall else 0.0


# --- the reconciliation sweep ----------------------------------------------------------------


def sweep_measure(args: argparse.Namespace) -> dict[str, Any]:
    """In this process, as the beat-scheduled task runs it. The first run queues what is due in
    the data (a few stranded units) and is reported apart; the measured runs are the steady state."""
    from fulfillment.services import paid_orders_reconcile

    began = time.perf_counter()
    first_queued = paid_orders_reconcile()
    first = time.perf_counter() - began
    times, queued = [], []
    for _ in range(args.sweep_runs):
        began = time.perf_counter()
        queued.append(len(paid_orders_reconcile()))
        times.append(time.perf_counter() - began)
    result = {
        "first_ms": first * 1000,
        "first_queued": len(first_queued),
        "n": len(times),
        "p50_ms": statistics.median(times) * 1000,
        "p95_ms": _percentile(times, 0.95) * 1000,
        "queued": queued,
    }
    _log(
        f"Reconciliation sweep: p50 {result['p50_ms']:.1f} ms over {len(times)} runs (first run "
        f"{result['first_ms']:.0f} ms, queued {result['first_queued']} order(s))"
    )
    return result


# --- the webhook -----------------------------------------------------------------------------


@contextmanager
def _cpu_attributed_to(url: str) -> Iterator[None]:
    """bench/run.py's load_run counts the PostgreSQL backends of DATABASE_URL's database."""
    saved = os.environ["DATABASE_URL"]
    os.environ["DATABASE_URL"] = url
    try:
        yield
    finally:
        os.environ["DATABASE_URL"] = saved


def webhook_measure(args: argparse.Namespace, servers: dict[str, Server], urls: dict[str, str]) -> dict[str, Any]:
    from django.db import connection

    from bench import fixtures, scale_data

    tool = loadgen_choose(args.loadgen)
    concurrency, seconds = args.webhook_concurrency, args.webhook_seconds
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
    created: dict[str, list[int]] = {label: [] for label in servers}
    rate_guess = 500.0

    def one(label: str, duration: float) -> dict[str, Any]:
        nonlocal rate_guess
        count = max(1000, int(rate_guess * duration * 2))
        with pg_connect(urls[label]) as pg:
            order_ids = scale_data.orders_new_insert(
                pg, count=count, product=1, price=WEBHOOK_PRICE, connection=connection
            )
            # The OrderIds come from the database the orders are in (the empty one is not Django's).
            public_ids = dict(
                pg.execute("SELECT id, public_id FROM orders_order WHERE id = ANY(%s)", (order_ids,)).fetchall()
            )
        created[label] += order_ids
        server = servers[label]
        with _cpu_attributed_to(urls[label]):
            result = load_run(
                tool=tool,
                port=server.port,
                path=WEBHOOK_PATH,
                bodies=fixtures.confirmed_bodies(order_ids, public_ids=public_ids),
                concurrency=concurrency,
                seconds=duration,
                groups={"server": [server.proc.pid]},
            )
        time.sleep(0.3)  # requests the client abandoned at its deadline finish server-side
        with pg_connect(urls[label]) as pg:
            rows = pg.execute(
                "SELECT verdict, count(*) FROM orders_paymentnotification WHERE order_id = ANY(%s) GROUP BY verdict",
                (order_ids,),
            ).fetchall()
        result["verdicts"] = dict(rows)
        result["orders_provisioned"] = count
        redis_flush(args.redis_url)
        rate_guess = max(rate_guess, result["rps"])
        return result

    _log(f"Webhook: {concurrency} clients, load generator {tool}; warming both servers up")
    for label in servers:
        one(label, 1.0)
    for round_no in range(args.webhook_rounds):
        order = ("empty", "loaded") if round_no % 2 == 0 else ("loaded", "empty")
        best: dict[str, dict[str, Any]] | None = None
        for attempt in range(args.webhook_retries + 1):
            pair = {}
            for label in order:
                pair[label] = result = one(label, seconds)
                _log(
                    f"  round {round_no + 1}, {label} database: {result['rps']:.0f} req/s, p50 "
                    f"{result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, applied "
                    f"{result['verdicts'].get('applied', 0)}/{result['requests']}, other programs used "
                    f"{result['other_cpu_share']:.0%} of the machine"
                )
            disturbed = max(run["other_cpu_share"] for run in pair.values())
            if best is None or disturbed < max(run["other_cpu_share"] for run in best.values()):
                best = pair
            if disturbed <= args.max_other_share:
                break
            if attempt < args.webhook_retries:
                _log(f"  round {round_no + 1} was disturbed by other programs; measuring it again")
        for label in order:
            runs[label].append(best[label])
    summary: dict[str, Any] = {"loadgen": tool, "concurrency": concurrency, "seconds": seconds, "runs": runs}
    for label, label_runs in runs.items():
        summary[label] = {key: statistics.median(run[key] for run in label_runs) for key in ("rps", "p50_ms", "p99_ms")}
        summary[label]["applied"] = sum(run["verdicts"].get("applied", 0) for run in label_runs)
        summary[label]["requests"] = sum(run["requests"] for run in label_runs)
        summary[label]["wrapped"] = sum(run.get("wrapped", 0) for run in label_runs)
        summary[label]["other_cpu_share_max"] = max(run["other_cpu_share"] for run in label_runs)
        # CPU per request moves less than req/s when neighbours take the machine's cores.
        for component in ("server", "postgresql"):
            summary[label][f"{component}_cpu_ms"] = statistics.median(
                run["cpu_ms_per_request"].get(component, 0.0) for run in label_runs
            )
    # Each round's two loads run back to back, under the same weather on a shared machine: the
    # median of the rounds' ratios is steadier than the ratio of the medians.
    summary["round_ratios"] = [
        loaded["rps"] / empty["rps"] if empty["rps"] else 0.0
        for loaded, empty in zip(runs["loaded"], runs["empty"], strict=True)
    ]
    summary["ratio"] = statistics.median(summary["round_ratios"])
    with pg_connect(urls["loaded"]) as pg:
        webhook_rows_delete(pg, created["loaded"])
    return summary


def webhook_rows_delete(pg: Any, order_ids: list[int]) -> None:
    """Take the webhook's orders out of the loaded database again, so that a kept database
    (--keep-database) measures the same data next time."""
    from fulfillment.models import Delivery, DeliveryAttempt
    from orders.models import Order, OrderItem, Payment, PaymentNotification

    with pg.transaction():
        for model in (DeliveryAttempt, Delivery, PaymentNotification, Payment, OrderItem, Order):
            column = "id" if model is Order else "order_id"
            pg.execute(f"DELETE FROM {model._meta.db_table} WHERE {column} = ANY(%s)", (order_ids,))
    for model in (Delivery, PaymentNotification, Payment, OrderItem, Order):
        pg.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


# --- query plans -----------------------------------------------------------------------------


def _explain(sql: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a statement, rolled back (it may be an UPDATE)."""
    from django.db import connection, transaction

    class Rollback(Exception):
        pass

    lines: list[str] = []
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                lines = [row[0] for row in cursor.fetchall()]
            raise Rollback
    except Rollback:
        pass
    return "\n".join(lines)


def _statement_list(captured: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Every statement of the page, slowest first, shortened: where the time goes at a glance."""
    rows = [{"ms": round(float(query["time"]) * 1000, 1), "sql": _shorten(query["sql"])} for query in captured]
    return sorted(rows, key=lambda row: -row["ms"])


def _shorten(sql: str, limit: int = 160) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[: limit - 3] + "..."


def _slowest_queries(captured: list[dict[str, str]], *, top: int = 2, at_least_ms: float = 5.0) -> list[dict]:
    queries = sorted(captured, key=lambda query: float(query["time"]), reverse=True)
    chosen = []
    for query in queries[:top]:
        ms = float(query["time"]) * 1000
        if ms < at_least_ms:
            break
        chosen.append({"ms": round(ms, 1), "sql": query["sql"], "plan": _explain(query["sql"])})
    return chosen


def page_group(page: dict[str, Any]) -> str:
    """ "order list" for the order list and each of its filters, "order search" for every search..."""
    if page.get("kind") == "search":
        return "order search"
    return page["name"].split(":")[0].split(",")[0]


def pages_compare(pages: list[dict[str, Any]], baseline_pages: list[dict[str, Any]]) -> None:
    """Give each page its p50 at the baseline size and the ratio; None where the baseline has no
    such page or either failed.

    The baseline is the page of the same name, showing as many rows. A filter for something rare
    (units sent and not answered, payments refused for their amount) shows a handful of rows at
    10,000 orders and a full page at a million: rendering a full page costs more whatever the
    table's size, so such a page is judged against its list unfiltered at the baseline, which
    shows a full page of the same rows. What grows with the table (a query reading more rows)
    still shows; what only renders more rows does not."""
    baseline = {page["name"]: page for page in baseline_pages}
    unfiltered = {
        page_group(page): page
        for page in baseline_pages
        if page.get("kind") == "page" and page["name"].endswith(", unfiltered") and page.get("p50_ms")
    }
    for page in pages:
        base = baseline.get(page["name"], {})
        page["baseline_rows"] = base.get("rows")
        rows = page.get("rows")
        if page.get("kind") == "filter" and rows is not None and (base.get("rows") or 0) < rows:
            full = unfiltered.get(page_group(page))
            if full is not None and (full.get("rows") or 0) >= rows:
                base = full
                page["baseline_page"] = full["name"]
                page["baseline_rows"] = full.get("rows")
        page["baseline_p50_ms"] = base.get("p50_ms")
        page["baseline_found"] = base.get("found")
        both = page.get("p50_ms") is not None and page["baseline_p50_ms"]
        page["ratio"] = page["p50_ms"] / page["baseline_p50_ms"] if both else None


def _over_target(page: dict[str, Any]) -> bool:
    return page.get("ratio") is not None and page["ratio"] > BASELINE_RATIO_LIMIT


def pages_to_explain(pages: list[dict[str, Any]], *, per_group: int) -> list[dict[str, Any]]:
    """The pages furthest over their baseline in each group (a list and its filters, the
    searches, the order page...): one plan per kind of problem rather than five plans of one query."""
    chosen: dict[str, list[dict[str, Any]]] = {}
    over = [page for page in pages if _over_target(page)]
    for page in sorted(over, key=lambda row: row["ratio"], reverse=True):
        group = chosen.setdefault(page_group(page), [])
        if len(group) < per_group:
            group.append(page)
    return sorted((page for group in chosen.values() for page in group), key=lambda row: -row["ratio"])


def explain_slowest(args: argparse.Namespace, pages: list[dict[str, Any]], username: str) -> list[dict[str, Any]]:
    """Render the slowest pages of each group in this process with their SQL captured, and
    explain the slowest statements of each; the same for one sweep."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from fulfillment.services import paid_orders_reconcile

    explained = []
    client = Client(SERVER_NAME=LOOPBACK)
    client.force_login(get_user_model().objects.get(username=username))
    for page in pages_to_explain(pages, per_group=args.explain):
        with CaptureQueriesContext(connection) as captured:
            began = time.perf_counter()
            client.get(page["path"])
            elapsed = time.perf_counter() - began
        explained.append(
            {
                "what": page["name"],
                "path": page["path"],
                "p50_ms": page["p50_ms"],
                "statements": len(captured.captured_queries),
                "sql_ms": round(sum(float(q["time"]) for q in captured.captured_queries) * 1000, 1),
                "in_process_ms": round(elapsed * 1000, 1),
                "statement_list": _statement_list(captured.captured_queries),
                "queries": _slowest_queries(captured.captured_queries),
            }
        )
        _log(f"  explained {page['name']} ({len(captured.captured_queries)} statements)")
    with CaptureQueriesContext(connection) as captured:
        began = time.perf_counter()
        paid_orders_reconcile()
        elapsed = time.perf_counter() - began
    explained.append(
        {
            "what": "reconciliation sweep",
            "path": "fulfillment.services.paid_orders_reconcile()",
            "statements": len(captured.captured_queries),
            "sql_ms": round(sum(float(q["time"]) for q in captured.captured_queries) * 1000, 1),
            "in_process_ms": round(elapsed * 1000, 1),
            "statement_list": _statement_list(captured.captured_queries),
            "queries": _slowest_queries(captured.captured_queries, top=3),
        }
    )
    redis_flush(args.redis_url)
    return explained


# --- targets and report ----------------------------------------------------------------------


def _ratio_text(row: dict[str, Any]) -> str:
    if row.get("error"):
        return row["error"]
    if row.get("ratio") is None:
        return f"{_fmt(row.get('p50_ms'), 0)} ms, no baseline measured"
    against = f", {row['baseline_page']}" if row.get("baseline_page") else ""
    return f"{row['ratio']:.2f} ({row['p50_ms']:.0f} vs {row['baseline_p50_ms']:.0f} ms{against})"


def _rows_text(row: dict[str, Any]) -> str:
    if row.get("rows") is None:
        return "-"
    base = "-" if row.get("baseline_rows") is None else str(row["baseline_rows"])
    return f"{base}/{row['rows']}{'*' if row.get('baseline_page') else ''}"


def _ratio_key(row: dict[str, Any]) -> float:
    return math.inf if row.get("error") or row.get("ratio") is None else row["ratio"]


def targets_evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target is a ratio to the baseline database measured in the same run (the webhook's
    to the empty database); the absolute figures stay in the report beside them."""
    targets = []
    limit = BASELINE_RATIO_LIMIT
    baseline = results.get("baseline", {})
    at = f"at {baseline.get('orders', 0):,} orders"
    rows = results.get("admin", {}).get("pages", [])
    for kind, title in (
        ("page", f"every admin page p50 <= {limit:g} x {at}"),
        ("search", f"every order search p50 <= {limit:g} x {at}"),
    ):
        chosen = [row for row in rows if row["kind"] == kind or (kind == "page" and row["kind"] == "filter")]
        if not chosen:
            continue
        failing = [row for row in chosen if _ratio_key(row) > limit]
        worst = max(chosen, key=_ratio_key)
        targets.append(
            {
                "target": title,
                "met": not failing,
                "value": f"{len(chosen) - len(failing)} of {len(chosen)} within; highest {worst['name']}: "
                + _ratio_text(worst),
                "failing": [
                    {"name": row["name"], "value": _ratio_text(row)}
                    for row in sorted(failing, key=_ratio_key, reverse=True)
                ],
            }
        )
    searches = [row for row in rows if row["kind"] == "search" and "found" in row]
    if searches:
        missed = [row["name"] for row in searches if not row["found"]]
        missed += [f"{row['name']} {at}" for row in searches if row.get("baseline_found") is False]
        targets.append(
            {
                "target": "every order search finds the order searched for",
                "met": not missed,
                "value": "all found" if not missed else "not found: " + ", ".join(missed),
                "failing": [],
            }
        )
    sweep = results.get("sweep")
    if sweep:
        base_ms = baseline.get("sweep", {}).get("p50_ms")
        ratio = sweep["p50_ms"] / base_ms if base_ms else None
        targets.append(
            {
                "target": f"reconciliation sweep p50 <= {limit:g} x {at}",
                "met": ratio is not None and ratio <= limit,
                "value": f"{ratio:.2f} ({sweep['p50_ms']:.1f} vs {base_ms:.1f} ms)"
                if ratio is not None
                else f"{sweep['p50_ms']:.1f} ms, no baseline measured",
                "failing": [],
            }
        )
    webhook = results.get("webhook")
    if webhook:
        ratio = webhook["ratio"]
        targets.append(
            {
                "target": f"webhook on the loaded database >= {WEBHOOK_TARGET_RATIO} x on an empty one (req/s)",
                "met": ratio >= WEBHOOK_TARGET_RATIO,
                "value": f"{ratio:.2f} (median {webhook['loaded']['rps']:.0f} / {webhook['empty']['rps']:.0f} req/s)",
                "failing": [],
            }
        )
    return targets


def report_print(results: dict[str, Any]) -> None:
    print()
    machine = results["machine"]
    print(
        f"Machine: {machine['nproc']} CPU ({machine['cpu_model']}), {machine['memory_gib']} GiB; Python "
        f"{machine['python']}, Django {machine['django']}, PostgreSQL {machine['postgresql']}"
    )
    data = results["data"]
    print("\nData: " + ", ".join(f"{label} {count:,}" for label, count in data["rows"].items()))
    if data.get("load_s") is not None:
        print(f"      loaded in {data['load_s']:.0f} s, VACUUM ANALYZE {data['vacuum_s']:.0f} s, {data['size']}")
    base_rows = results.get("baseline", {}).get("data", {}).get("rows")
    if base_rows:
        print("Baseline: " + ", ".join(f"{label} {count:,}" for label, count in base_rows.items()))
    baseline = results.get("baseline", {})
    base_orders = f"{baseline.get('orders', 0):,}"
    admin = results.get("admin")
    if admin:
        print(
            f"\nAdmin pages, as a logged-in staff user through gunicorn (ms; up to {results['config']['repeat']} "
            f"requests; other programs used {admin.get('other_cpu_share', 0):.0%} of the machine meanwhile); "
            f"p50 at {base_orders} orders (the baseline) and at {results['config']['orders']:,}, their ratio"
        )
        print(
            "   (rows: shown at the baseline / at full size; * judged against the list unfiltered at the baseline, "
            "which shows as many rows; ~ measured again alternating with the baseline, first ratio in the results)"
        )
        print(f"{'':2} {'page':<64} {'rows':>9} {'base p50':>8} {'p50':>7} {'p95':>7} {'ratio':>6}")
        for row in admin["pages"]:
            mark = "!!" if row.get("error") or _ratio_key(row) > BASELINE_RATIO_LIMIT else ""
            mark = mark or ("~" if row.get("remeasured") else "")
            figures = row.get("error") or (
                f"{_rows_text(row):>9} {_fmt(row.get('baseline_p50_ms'), 0):>8} {_fmt(row.get('p50_ms'), 0):>7} "
                f"{_fmt(row.get('p95_ms'), 0):>7} {_fmt(row.get('ratio'), 2):>6}"
            )
            if row.get("found") is False:
                figures += "  (order not found)"
            print(f"{mark:2} {row['name'][:64]:<64} {figures}")
    sweep = results.get("sweep")
    if sweep:
        base_sweep = baseline.get("sweep", {})
        print(
            f"\nReconciliation sweep: p50 {sweep['p50_ms']:.1f} ms (at {base_orders} orders "
            f"{_fmt(base_sweep.get('p50_ms'))} ms), p95 {sweep['p95_ms']:.1f} ms over "
            f"{sweep['n']} runs (first run {sweep['first_ms']:.0f} ms, queued {sweep['first_queued']} order(s))"
        )
    webhook = results.get("webhook")
    if webhook:
        print(
            f"\nWebhook: {webhook['concurrency']} clients, {webhook['seconds']:g} s per load, load generator "
            f"{webhook['loadgen']}, median of {len(webhook['runs']['loaded'])} alternating round(s)"
        )
        for label in ("empty", "loaded"):
            run = webhook[label]
            print(
                f"  {label:>6} database: {run['rps']:7.0f} req/s, p50 {run['p50_ms']:6.1f} ms, p99 "
                f"{run['p99_ms']:6.1f} ms, applied {run['applied']}/{run['requests']}; CPU per request: server "
                f"{run['server_cpu_ms']:.2f} ms, PostgreSQL {run['postgresql_cpu_ms']:.2f} ms"
            )
        rounds = ", ".join(f"{ratio:.2f}" for ratio in webhook["round_ratios"])
        print(f"  loaded / empty: {_fmt(webhook['ratio'], 2)} (median of the rounds: {rounds})")
    explained = results.get("explained")
    if explained:
        print("\nSlowest statements (EXPLAIN ANALYZE in the Markdown report)")
        for entry in explained:
            slowest = ", ".join(f"{query['ms']:.0f}" for query in entry["queries"])
            print(
                f"  {entry['what'][:60]:<60} {entry['in_process_ms']:>7.0f} ms in-process, {entry['sql_ms']:>7.0f} ms "
                f"in {entry['statements']:>3} statements, slowest {slowest} ms"
            )
    print()
    if results["mode"] == "full":
        print("Targets")
    else:
        orders = results["config"]["orders"]
        print(f"Targets ({results['mode']} run, {orders:,} orders: the targets are set for a million)")
    for target in results["targets"]:
        print(f"  [{'met' if target['met'] else 'NOT MET'}] {target['target']}: {target['value']}")
        for failing in target["failing"][:40]:
            print(f"      {failing['name']}: {failing['value']}")
        if len(target["failing"]) > 40:
            print(f"      ... and {len(target['failing']) - 40} more")


def report_markdown(results: dict[str, Any]) -> str:
    """The figures as Markdown, for docs/benchmarks.md (`--render FILE`)."""
    machine, data, config = results["machine"], results["data"], results["config"]
    lines = [
        f"Run {results['started_at']} ({results['mode']}, {results.get('wall_s', '?')} s). Machine: {machine['nproc']} "
        f"CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB; Python {machine['python']}, Django "
        f"{machine['django']}, gunicorn {machine['gunicorn']}, PostgreSQL {machine['postgresql']}.",
        "",
        "Data: " + ", ".join(f"{label} {count:,}" for label, count in data["rows"].items()) + ".",
    ]
    base_rows = results.get("baseline", {}).get("data", {}).get("rows")
    if data.get("load_s") is not None:
        lines[-1] += (
            f" Loaded in {data['load_s']:.0f} s, VACUUM ANALYZE in {data['vacuum_s']:.0f} s; {data['size']} on disk."
        )
    if base_rows:
        lines += ["", "Baseline: " + ", ".join(f"{label} {count:,}" for label, count in base_rows.items()) + "."]
    baseline = results.get("baseline", {})
    base_orders = f"{baseline.get('orders', 0):,}"
    admin = results.get("admin")
    if admin:
        lines += [
            "",
            f"Admin pages as a logged-in superuser through gunicorn ({config['gunicorn_workers']} sync workers), one "
            f"request at a time: one unmeasured, then {config['repeat']} (fewer for a page over "
            f"{config['page_budget']:g} s in all); ms. The same page at {base_orders} orders (the baseline, measured "
            f"earlier in the run) beside it; the target is p50 <= {BASELINE_RATIO_LIMIT:g} x the baseline's. A "
            "filter that shows fewer rows at the baseline than at full size (*) is judged against its list unfiltered "
            "at the baseline, which shows as many rows. A page over its target is measured again, alternating "
            "requests with its baseline page, and judged by those figures. Rows: shown at the baseline / at full "
            "size. Other "
            f"programs used {admin.get('other_cpu_share', 0):.0%} of the machine meanwhile.",
            "",
            f"| page | n | rows | p50 at {base_orders} | p50 | p95 | ratio | target |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in admin["pages"]:
            if row.get("error"):
                lines.append(f"| {row['name']} | | | | {row['error']} | | | **NOT MET** |")
                continue
            met = _ratio_key(row) <= BASELINE_RATIO_LIMIT and row.get("found", True)
            note = " (order not found)" if row.get("found") is False else ""
            if row.get("remeasured"):
                note += f" (measured again alternating; first ratio {_fmt(row['first'].get('ratio'), 2)})"
            lines.append(
                f"| {row['name']}{note} | {row['n']} | {_rows_text(row)} | {_fmt(row.get('baseline_p50_ms'), 0)} | "
                f"{row['p50_ms']:.0f} | "
                f"{row['p95_ms']:.0f} | {_fmt(row.get('ratio'), 2)} | {'met' if met else '**NOT MET**'} |"
            )
    sweep = results.get("sweep")
    if sweep:
        base_sweep = baseline.get("sweep", {})
        lines += [
            "",
            f"Reconciliation sweep (in-process): p50 **{sweep['p50_ms']:.1f} ms** (at {base_orders} orders "
            f"{_fmt(base_sweep.get('p50_ms'))} ms), p95 {sweep['p95_ms']:.1f} ms over "
            f"{sweep['n']} runs; the first run, which queued the {sweep['first_queued']} order(s) due in the data, "
            f"took {sweep['first_ms']:.0f} ms.",
        ]
    webhook = results.get("webhook")
    if webhook:
        lines += [
            "",
            f"Webhook: {webhook['concurrency']} clients, {webhook['seconds']:g} s per load, load generator "
            f"{webhook['loadgen']}, median of {len(webhook['runs']['loaded'])} alternating round(s).",
            "",
            "| database | req/s (median) | p50 ms | p99 ms | applied | CPU ms/request: server / PostgreSQL "
            "| other programs' CPU |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for label in ("empty", "loaded"):
            run = webhook[label]
            lines.append(
                f"| {label} | {run['rps']:.0f} | {run['p50_ms']:.1f} | {run['p99_ms']:.1f} | "
                f"{run['applied']} / {run['requests']} | {run['server_cpu_ms']:.2f} / {run['postgresql_cpu_ms']:.2f} | "
                f"up to {run['other_cpu_share_max']:.0%} |"
            )
        rounds = ", ".join(f"{ratio:.2f}" for ratio in webhook["round_ratios"])
        lines += ["", f"Loaded / empty: **{_fmt(webhook['ratio'], 2)}**, the median of the rounds' ratios ({rounds})."]
    lines += ["", "| target | value | met |", "|---|---|---|"]
    for target in results["targets"]:
        lines.append(f"| {target['target']} | {target['value']} | {'yes' if target['met'] else '**NO**'} |")
    explained = results.get("explained")
    if explained:
        lines += ["", "### Query plans of the slowest pages and of the sweep", ""]
        for entry in explained:
            lines.append(
                f"**{entry['what']}** (`{entry['path']}`): {entry['statements']} statements, {entry['sql_ms']} ms "
                f"of SQL, {entry['in_process_ms']} ms in-process."
            )
            listing = entry.get("statement_list", [])
            if listing:
                lines += ["", "| ms | statement |", "|---:|---|"]
                for row in listing[:12]:
                    lines.append(f"| {row['ms']} | `{row['sql'].replace('|', '/')}` |")
                if len(listing) > 12:
                    lines.append(f"| | ... and {len(listing) - 12} more |")
            if not entry["queries"]:
                lines += [
                    "",
                    "No statement took 5 ms or more: the time goes to Python (building and rendering the page).",
                ]
            for query in entry["queries"]:
                lines += [
                    "",
                    f"{query['ms']} ms:",
                    "",
                    "```sql",
                    query["sql"],
                    "```",
                    "",
                    "```text",
                    query["plan"],
                    "```",
                ]
            lines.append("")
    return "\n".join(lines) + "\n"


# --- main ------------------------------------------------------------------------------------


def database_measure(args: argparse.Namespace, env: dict[str, str], username: str, password: str) -> dict[str, Any]:
    """The admin pages (through a gunicorn of their own) and the sweep on env's DATABASE_URL,
    which this process's ORM must point at too (database_use)."""
    measured: dict[str, Any] = {}
    name = _database_name(env["DATABASE_URL"])
    django_disconnect()  # gunicorn's workers, not this process, serve the pages
    if not args.skip_admin:
        server = gunicorn_start(args, env, label=f"admin-{name}")
        admin = AdminClient(server)
        admin.login(username, password)
        phase: dict[str, Any] = {}
        with other_programs_share(server, name, phase):
            measured["admin"] = admin_measure(admin, args)
        measured["admin"].update(phase)
        PROCESSES.stop(server.proc)
    measured["sweep"] = sweep_measure(args)
    return measured


def alternate(get: Callable[[str], tuple[int, float, str]], *, repeat: int) -> dict[str, list[float]]:
    """Seconds of `repeat` requests to "base" and to "full" (`get(label)`), in alternation and in
    alternating order, after one unmeasured request to each: both see the same weather."""
    times: dict[str, list[float]] = {"base": [], "full": []}
    for label in times:
        get(label)
    for round_no in range(repeat):
        for label in ("base", "full") if round_no % 2 == 0 else ("full", "base"):
            status, seconds, _ = get(label)
            if status == 200:
                times[label].append(seconds)
    return times


def pages_remeasure(
    args: argparse.Namespace,
    env: dict[str, str],
    username: str,
    password: str,
    pages: list[dict[str, Any]],
    baseline_pages: list[dict[str, Any]],
) -> None:
    """Measure every page over its target again, on both databases in alternation (a request to
    the baseline's page, then one to the page at full size, --repeat times), and judge it by these
    figures. The two phases run minutes apart, and a shared machine's weather changes in minutes:
    a page only unlucky in its phase passes now, one that grows with the table fails again.
    The first figures stay in the results (`first`)."""
    over = [page for page in pages if _over_target(page) and not page.get("error")]
    if not over:
        return
    paths = {page["name"]: page["path"] for page in baseline_pages}
    _log(f"Measuring the {len(over)} page(s) over their target again, alternating with the baseline")
    django_disconnect()
    servers = {
        "base": gunicorn_start(args, {**env, "DATABASE_URL": args.baseline_url}, label="again-base"),
        "full": gunicorn_start(args, env, label="again-full"),
    }
    try:
        clients = {label: AdminClient(server) for label, server in servers.items()}
        for client in clients.values():
            client.login(username, password)
        for page in over:
            targets = {"base": paths.get(page.get("baseline_page") or page["name"]), "full": page["path"]}
            if targets["base"] is None:
                continue
            times = alternate(lambda label, targets=targets: clients[label].get(targets[label]), repeat=args.repeat)
            if not times["base"] or not times["full"]:
                continue
            page["first"] = {key: page.get(key) for key in ("p50_ms", "p95_ms", "baseline_p50_ms", "ratio")}
            page.update(
                remeasured=True,
                p50_ms=statistics.median(times["full"]) * 1000,
                p95_ms=_percentile(times["full"], 0.95) * 1000,
                baseline_p50_ms=statistics.median(times["base"]) * 1000,
            )
            page["ratio"] = page["p50_ms"] / page["baseline_p50_ms"]
            _log(f"  {page['name']}: {page['first']['ratio']:.2f} before, {page['ratio']:.2f} alternating")
    finally:
        for server in servers.values():
            PROCESSES.stop(server.proc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        sys.stdout.write(report_markdown(json.loads(args.render.read_text())))
        return 0
    VAR.mkdir(parents=True, exist_ok=True)
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)  # bench/run.py's load_run writes there
    signal.signal(signal.SIGTERM, _on_signal)
    atexit.register(PROCESSES.stop_all)
    began = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "started_at": stamp,
        "mode": "tiny" if args.tiny else "quick" if args.quick else "full",
        "config": {
            "orders": args.orders,
            "baseline_orders": args.baseline_orders,
            "hot_attempts": args.hot_attempts,
            "repeat": args.repeat,
            "page_budget": args.page_budget,
            "sweep_runs": args.sweep_runs,
            "gunicorn_workers": args.gunicorn_workers,
            "webhook_rounds": args.webhook_rounds,
            "webhook_seconds": args.webhook_seconds,
            "webhook_concurrency": args.webhook_concurrency,
            "webhook_retries": args.webhook_retries,
        },
    }
    to_drop: list[str] = []
    try:
        services_ensure(args)
        env = scale_environment(args, args.database_url)
        reuse = args.reuse_database and database_exists(args.database_url)
        if args.reuse_database and not reuse:
            raise SystemExit(f"--reuse-database: {args.database_name} does not exist (run with --keep-database first).")
        if not args.keep_database:
            to_drop.append(args.database_url)
        if not reuse:
            database_create(args.database_url)
        to_drop.append(args.baseline_url)
        database_create(args.baseline_url)
        urls = [args.database_url, args.baseline_url]
        if not args.skip_webhook:
            to_drop.append(args.empty_url)
            database_create(args.empty_url)
            urls.append(args.empty_url)
        _log("Migrating " + " and ".join(_database_name(url) for url in urls))
        migrate(urls, env)
        django_setup(env)
        redis_flush(args.redis_url)
        results["data"] = {} if reuse else data_load(args, url=args.database_url, orders=args.orders)
        results["data"]["rows"] = data_describe()
        results["data"]["reused"] = reuse
        results["machine"] = machine_description()
        password = secrets.token_urlsafe(16)
        username = staff_user_create(password)
        # The baseline first: the same pages, searches and sweep on a small database, in this run.
        database_use(args.baseline_url)
        baseline: dict[str, Any] = {
            "orders": args.baseline_orders,
            "data": data_load(args, url=args.baseline_url, orders=args.baseline_orders),
        }
        baseline["data"]["rows"] = data_describe()
        staff_user_create(password)
        _log(f"Baseline: {args.baseline_orders:,} orders")
        baseline.update(database_measure(args, {**env, "DATABASE_URL": args.baseline_url}, username, password))
        results["baseline"] = baseline
        database_use(args.database_url)
        _log(f"Measuring {args.database_name}: {results['data']['rows']['orders']:,} orders")
        results.update(database_measure(args, env, username, password))
        if not args.skip_admin:
            pages_compare(results["admin"]["pages"], baseline["admin"]["pages"])
            pages_remeasure(args, env, username, password, results["admin"]["pages"], baseline["admin"]["pages"])
        if args.explain > 0 and not args.skip_admin:
            # Before the webhook, which adds paid orders to the data.
            _log("Explaining the slowest statements of the slowest pages and of the sweep")
            results["explained"] = explain_slowest(args, results["admin"]["pages"], username)
        if not args.skip_webhook:
            from django.db import connection

            from bench import scale_data

            with pg_connect(args.empty_url) as pg:
                scale_data.products_insert(pg, count=1, connection=connection)
            # Two fresh servers alike: the one that rendered the admin pages has grown its heap.
            servers = {
                "empty": gunicorn_start(args, {**env, "DATABASE_URL": args.empty_url}, label="empty"),
                "loaded": gunicorn_start(args, env, label="loaded"),
            }
            results["webhook"] = webhook_measure(args, servers, {"empty": args.empty_url, "loaded": args.database_url})
            for server in servers.values():
                PROCESSES.stop(server.proc)
        results["targets"] = targets_evaluate(results)
        results["wall_s"] = round(time.monotonic() - began, 1)
    finally:
        PROCESSES.stop_all()
        if "django" in sys.modules:
            django_disconnect()
        for url in to_drop:
            try:
                database_drop(url)
                print(f"Dropped database {_database_name(url)}")
            except Exception as exc:  # noqa: BLE001  - cleanup must go on; say what is left behind
                print(f"Could not drop database {_database_name(url)}: {exc}; drop it by hand.", file=sys.stderr)
        if args.keep_database:
            print(f"Kept database {args.database_name} (--keep-database; measure it again with --reuse-database)")
        try:
            redis_flush(args.redis_url)
        except Exception:  # noqa: BLE001, S110  - the broker may be what failed
            pass
    output = args.output or RESULTS / f"scale-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    text, markdown = json.dumps(results, indent=2, default=str), report_markdown(results)
    output.write_text(text)
    output.with_suffix(".md").write_text(markdown)
    written = f"{output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} and .md"
    if not args.output:
        (RESULTS / "scale-latest.json").write_text(text)
        (RESULTS / "scale-latest.md").write_text(markdown)
        written += " (also bench/results/scale-latest.json and .md)"
    report_print(results)
    print(f"\nResults, with the query plans: {written}; took {results['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
