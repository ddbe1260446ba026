"""Benchmarks of the service's two jobs, each as a ratio to a baseline measured in the same run.

1. Accepting payment notifications: distinct signed CONFIRMED notifications for pre-created
   orders, from a load generator in its own process (wrk, or bench/loadgen.py without it),
   against gunicorn, at several concurrencies; the same for the floor endpoint (bench/floor.py).
   Then the webhook again with delivery workers running, once with the mock provider's 1-3 s
   delay and once with none: the webhook must not wait for the provider.
2. Delivering units: N paid orders, workers with C provider calls in flight, the mock at 1-3 s
   and no failures; compared with the limit N x mean delay / C. The same with zero delay gives
   the pipeline's own rate. Every unit must be delivered exactly once (the mock's ledger).

Everything runs on loopback against a dedicated database (fulfillment_bench) and Redis
database (14); PostgreSQL and Redis are started when they are not running, and every process
started here is stopped at the end, whatever happens. Usage: `make bench` / `make bench-quick`,
or `.venv/bin/python bench/run.py --help`.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
VAR = ROOT / "var" / "bench"
WEBHOOK_PATH = "/api/payments/tbank/notification"
FLOOR_PATH = "/bench/floor"
LOOPBACK = "127.0.0.1"


# --- options ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the payment webhook and the delivery workers against baselines measured in the same run."
    )
    parser.add_argument("--quick", action="store_true", help="Small sizes: finishes in under a minute.")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="Sizes for CI (seconds, not figures): every step runs, on a handful of orders, short loads, one "
        "worker process of 4 threads and a 0.05-0.2 s provider. With --quick or without, the same code paths "
        "as that run; nothing it prints is a measurement.",
    )
    parser.add_argument("--concurrency", help="Webhook client concurrencies, comma separated (full: 1,4,16,64).")
    parser.add_argument("--seconds", type=float, help="Length of each webhook/floor load (full: 5, quick: 2).")
    parser.add_argument("--compare-concurrency", type=int, default=16, help="Clients for the provider-delay runs.")
    parser.add_argument("--compare-rate", type=float, help="Paced notifications/s of the provider-delay runs (50).")
    parser.add_argument("--compare-rounds", type=int, help="Rounds of the provider-delay runs (full: 3, quick: 1).")
    parser.add_argument("--orders", type=int, help="Paid orders (one unit each) per delivery run (full: 1000).")
    parser.add_argument("--worker-processes", type=int, help="Celery worker processes (2).")
    parser.add_argument("--worker-threads", type=int, help="Threads (provider calls in flight) each (100).")
    parser.add_argument("--worker-pool-size", type=int, help="DATABASE_POOL_MAX_SIZE of each worker (20).")
    parser.add_argument("--gunicorn-workers", type=int, help="gunicorn worker processes (4).")
    parser.add_argument("--gunicorn-threads", type=int, default=1, help="Threads per gunicorn worker (1: sync).")
    parser.add_argument("--delay-min", type=float, help="Mock provider delay, seconds (min; 1).")
    parser.add_argument("--delay-max", type=float, help="Mock provider delay, seconds (max; 3).")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto", help="Load generator.")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fulfillment_bench"),
        help="Dedicated PostgreSQL database (created and migrated; its shop tables are emptied).",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        help="Dedicated Redis database for the broker (flushed before and after).",
    )
    parser.add_argument("--skip-webhook", action="store_true", help="Only the delivery benchmark.")
    parser.add_argument("--skip-delivery", action="store_true", help="Only the webhook benchmark.")
    parser.add_argument("--output", type=Path, help="JSON results file (default var/bench/results-<time>.json).")
    parser.add_argument(
        "--max-other-share",
        type=float,
        default=0.10,
        help="A webhook load during which other programs used more of the machine than this is repeated.",
    )
    parser.add_argument("--retries", type=int, help="Repeats of a disturbed webhook load (full: 1, quick: 0).")
    parser.add_argument("--render", type=Path, help="Print a results JSON file as Markdown tables, and stop.")
    args = parser.parse_args(argv)
    # (full, quick, tiny) of every size left unset.
    sizes = {
        "concurrency": ("1,4,16,64", "1,16", "1,16"),
        "seconds": (5.0, 2.0, 1.0),
        "retries": (1, 0, 0),
        # A tiny full run keeps two rounds, so that the alternation of the settings runs too.
        "compare_rounds": (3, 1, 1 if args.quick else 2),
        "compare_rate": (50.0, 50.0, 20.0),
        "orders": (1000, 200, 20),
        "worker_processes": (2, 2, 1),
        "worker_threads": (100, 100, 4),
        "worker_pool_size": (20, 20, 4),
        "gunicorn_workers": (4, 4, 2),
        "delay_min": (1.0, 1.0, 0.05),
        "delay_max": (3.0, 3.0, 0.2),
    }
    column = 2 if args.tiny else 1 if args.quick else 0
    for name, values in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, values[column])
    args.levels = [int(part) for part in args.concurrency.split(",") if part.strip()]
    if not 0 <= args.delay_min <= args.delay_max:
        parser.error("--delay-min must be >= 0 and <= --delay-max.")
    for url in (args.database_url, args.redis_url):
        host = url.split("@")[-1].split("//")[-1].split(":")[0].split("/")[0]
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            parser.error(f"{url}: the benchmark only runs against services on loopback.")
    return args


# --- processes -------------------------------------------------------------------------------


class Processes:
    """Every process the benchmark starts, each in its own process group, stopped on exit."""

    def __init__(self) -> None:
        self.running: dict[int, tuple[str, subprocess.Popen]] = {}
        self.stop_commands: list[tuple[str, list[str]]] = []

    def start(self, name: str, command: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running[proc.pid] = (name, proc)
        return proc

    def stop(self, proc: subprocess.Popen, *, grace: float = 15.0) -> None:
        self.running.pop(proc.pid, None)
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for _, proc in list(self.running.values()):
            self.stop(proc)
        while self.stop_commands:
            name, command = self.stop_commands.pop()
            print(f"Stopping {name} (started by the benchmark)")
            subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


PROCESSES = Processes()


def _on_signal(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, from /proc, in MiB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    except OSError:
        pass
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cpu_snapshot(groups: dict[str, list[int]], database: str) -> dict[str, float]:
    """CPU seconds used so far, by component: each process group in `groups`, this database's
    PostgreSQL backends, Redis, finished children of this process (the load generator), and
    the whole machine (busy time), so that what other programs used shows as "other"."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = dict.fromkeys([*groups, "postgresql", "redis"], 0.0)
    by_group = {pgid: name for name, pgids in groups.items() for pgid in pgids}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        pgid = int(fields[2])
        if pgid in by_group:
            totals[by_group[pgid]] += used
        elif comm == "postgres" and f" {database} ".encode() in cmdline:
            totals["postgresql"] += used
        elif comm == "redis-server":
            totals["redis"] += used
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    totals["load generator"] = children.ru_utime + children.ru_stime
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    idle = int(cpu[3]) + int(cpu[4])
    totals["machine"] = (sum(int(value) for value in cpu[:8]) - idle) / tick
    return totals


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """Milliseconds of CPU per request by component; "other" is what the rest of the machine used."""
    if not requests:
        return {}
    spent = {name: (after[name] - before[name]) * 1000 / requests for name in before}
    machine = spent.pop("machine")
    spent["other"] = max(0.0, machine - sum(spent.values()))
    spent["total"] = machine
    return {name: round(value, 3) for name, value in spent.items()}


# --- services --------------------------------------------------------------------------------


def _postgres_ready(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(_admin_url(url), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


def _redis_ready(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def services_ensure(args: argparse.Namespace) -> None:
    """Start PostgreSQL and Redis the way .ci/run does when they are not running."""
    if not _postgres_ready(args.database_url):
        versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if not versions or not shutil.which("pg_ctlcluster"):
            sys.exit(
                "PostgreSQL is not running on 127.0.0.1:5432 and is not installed here. Install it "
                "(apt-get install postgresql) or pass --database-url to a running one on loopback."
            )
        print("Starting PostgreSQL")
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]
        subprocess.run([*command, "start"], check=True)
        PROCESSES.stop_commands.append(("PostgreSQL", [*command, "stop"]))
    if not _redis_ready(args.redis_url):
        if not shutil.which("redis-server"):
            sys.exit("Redis is not running on 127.0.0.1:6379 and is not installed (apt-get install redis-server).")
        print("Starting Redis")
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--bind", LOOPBACK, "--port", "6379"]
            + ["--save", "", "--appendonly", "no"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        PROCESSES.stop_commands.append(("Redis", ["redis-cli", "-h", LOOPBACK, "-p", "6379", "shutdown", "nosave"]))
    for _ in range(30):
        if _postgres_ready(args.database_url) and _redis_ready(args.redis_url):
            return
        time.sleep(1)
    sys.exit("PostgreSQL or Redis did not come up within 30 s.")


def database_ensure(url: str) -> None:
    import psycopg
    from psycopg import sql

    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            print(f"Creating database {name}")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def redis_flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


# --- environment of every process ------------------------------------------------------------


def bench_environment(args: argparse.Namespace) -> dict[str, str]:
    """Settings for the benchmark, set explicitly so that nothing comes from a developer's .env."""
    return {
        "DJANGO_SETTINGS_MODULE": "fulfillment_site.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "VAR_DIR": str(VAR / "var"),
        "DATABASE_URL": args.database_url,
        "DATABASE_POOL": "true",
        "DATABASE_POOL_MIN_SIZE": "2",
        "DATABASE_POOL_MAX_SIZE": "20",
        "CELERY_BROKER_URL": args.redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_WORKER_POOL": "threads",
        "CELERY_WORKER_CONCURRENCY": str(args.worker_threads),
        "TBANK_TERMINAL_KEY": "BenchTerminal",
        "TBANK_PASSWORD": secrets.token_urlsafe(24),
        "TBANK_ALLOWED_NETWORKS": "",
        "TBANK_TRUST_X_FORWARDED_FOR": "false",
        "FULFILLMENT_PROVIDER": "mock",
        "FULFILLMENT_EXTRA_PROVIDERS": "",
        "MOCK_FULFILLMENT_DELAY_MIN": str(args.delay_min),
        "MOCK_FULFILLMENT_DELAY_MAX": str(args.delay_max),
        "MOCK_FULFILLMENT_SUCCESS_RATE": "1",
        "MOCK_FULFILLMENT_PENDING_RATE": "0",
        "MOCK_FULFILLMENT_SEED": "",
        "BENCHMARK_FLOOR_ENDPOINT": "true",
    }


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()
    import fulfillment_site.celery  # noqa: F401  - binds the tasks to the configured broker


# --- servers and workers ---------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen
    port: int


def gunicorn_start(args: argparse.Namespace, env: dict[str, str]) -> Server:
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
        "--log-level",
        "warning",
    ]
    if args.gunicorn_threads > 1:
        command += ["--worker-class", "gthread", "--threads", str(args.gunicorn_threads)]
    proc = PROCESSES.start("gunicorn", command, env=env, log=VAR / "gunicorn.log")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"gunicorn exited at startup; see {VAR / 'gunicorn.log'}.")
        try:
            request = urllib.request.Request(f"http://{LOOPBACK}:{port}{FLOOR_PATH}", data=b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return Server(proc, port)
        except OSError:
            time.sleep(0.2)
    sys.exit(f"gunicorn did not answer within 30 s; see {VAR / 'gunicorn.log'}.")


def workers_start(args: argparse.Namespace, env: dict[str, str], *, delay: tuple[float, float]) -> list:
    from celery import current_app

    env = {**env, "MOCK_FULFILLMENT_DELAY_MIN": str(delay[0]), "MOCK_FULFILLMENT_DELAY_MAX": str(delay[1])}
    env["DATABASE_POOL_MAX_SIZE"] = str(args.worker_pool_size)
    procs = []
    for index in range(args.worker_processes):
        command = [
            str(BIN / "celery"),
            "-A",
            "fulfillment_site",
            "worker",
            "-n",
            f"bench{index}@%h",
            "--pool",
            "threads",
            "--concurrency",
            str(args.worker_threads),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ]
        procs.append(PROCESSES.start(f"worker {index}", command, env=env, log=VAR / f"worker-{index}.log"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                sys.exit(f"A Celery worker exited at startup; see {VAR}/worker-*.log.")
        replies = current_app.control.ping(timeout=0.5) or []
        if len(replies) >= len(procs):
            return procs
    sys.exit(f"The Celery workers did not answer within 60 s; see {VAR}/worker-*.log.")


def workers_warm(product: Any, *, count: int, timeout: float = 20.0) -> None:
    """Deliver a few orders and wait for them, so that first-use costs in the workers (imports,
    the connection pool, the provider) are not paid inside a measured load."""
    from bench import fixtures
    from fulfillment.tasks import deliver_order

    order_ids = fixtures.orders_create_paid(count=count, product=product)
    for order_id in order_ids:
        deliver_order.delay(order_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and fixtures.orders_fulfilled(order_ids)[0] < count:
        time.sleep(0.1)


def workers_stop(procs: list) -> None:
    for proc in procs:
        PROCESSES.stop(proc, grace=20)


# --- load ------------------------------------------------------------------------------------


def loadgen_choose(preference: str) -> str:
    if preference == "python":
        return "python"
    if shutil.which("wrk"):
        return "wrk"
    if preference == "wrk":
        sys.exit("wrk is not installed (apt-get install wrk); use --loadgen python or auto.")
    return "python"


def load_run(
    *,
    tool: str,
    port: int,
    path: str,
    bodies: list[str],
    concurrency: int,
    seconds: float,
    groups: dict[str, list[int]] | None = None,
    interval_ms: float = 0.0,
) -> dict[str, Any]:
    """One bounded load from a separate process; returns its figures, with the CPU each
    component (the process groups in `groups`, PostgreSQL, Redis, the load generator) used.

    With `interval_ms` each client pauses that long after every answer: a paced load well
    under capacity, whose latency is the service time rather than time spent queueing."""
    groups = groups or {}
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[1].split("?")[0]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", dir=VAR, delete=False) as handle:
        handle.write("\n".join(bodies) + "\n")
        bodies_file = handle.name
    try:
        if tool == "wrk":
            threads = max(1, min(concurrency, os.cpu_count() or 1, 2))
            script = ROOT / "bench" / "webhook.lua"
            if interval_ms:
                # wrk paces through a global delay() that must exist when the script loads.
                script = VAR / "paced.lua"
                pacing = f"\nfunction delay()\n  return {interval_ms:.0f}\nend\n"
                script.write_text((ROOT / "bench" / "webhook.lua").read_text() + pacing)
            command = [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(concurrency),
                "-d",
                f"{max(1, round(seconds))}s",  # wrk takes whole seconds
                "--timeout",
                "10s",
                "-s",
                str(script),
                f"http://{LOOPBACK}:{port}{path}",
                "--",
                bodies_file,
                str(threads),
            ]
        else:
            command = [
                sys.executable,
                str(ROOT / "bench" / "loadgen.py"),
                "--port",
                str(port),
                "--path",
                path,
                "--bodies",
                bodies_file,
                "--concurrency",
                str(concurrency),
                "--seconds",
                str(seconds),
                "--interval-ms",
                str(interval_ms),
            ]
        before = cpu_snapshot(groups, database)
        proc = PROCESSES.start(f"load generator ({tool})", command, env=dict(os.environ), log=VAR / "loadgen.log")
        try:
            proc.wait(timeout=seconds + 60)
        finally:
            PROCESSES.stop(proc)
        after = cpu_snapshot(groups, database)
        lines = [line for line in (VAR / "loadgen.log").read_text().splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"The load generator failed (exit {proc.returncode}); see {VAR / 'loadgen.log'}.")
        result = json.loads(lines[-1])
        (VAR / "loadgen.log").unlink()
    finally:
        os.unlink(bodies_file)
    result["rps"] = result["requests"] / result["duration_s"] if result["duration_s"] else 0.0
    result["cpu_ms_per_request"] = cpu_per_request(before, after, result["requests"])
    # Share of the machine that other programs used meanwhile: a disturbed run shows here.
    other_s = (after["machine"] - before["machine"]) - sum(after[k] - before[k] for k in before if k != "machine")
    result["other_cpu_share"] = round(max(0.0, other_s) / ((os.cpu_count() or 1) * result["duration_s"]), 3)
    result["concurrency"] = concurrency
    return result


@dataclass
class WebhookBench:
    args: argparse.Namespace
    tool: str
    port: int
    product: Any
    floor_bodies: list[str] = field(default_factory=list)
    # Process groups whose CPU is reported per request (the server; the workers when running).
    groups: dict[str, list[int]] = field(default_factory=dict)

    def floor(self, concurrency: int, seconds: float) -> dict[str, Any]:
        return load_run(
            tool=self.tool,
            port=self.port,
            path=FLOOR_PATH,
            bodies=self.floor_bodies,
            concurrency=concurrency,
            seconds=seconds,
            groups=self.groups,
        )

    def webhook(
        self, concurrency: int, seconds: float, *, expected_rps: float, interval_ms: float = 0.0
    ) -> dict[str, Any]:
        from bench import fixtures

        # Enough distinct orders that no notification repeats: more than the floor's rate allows.
        count = max(500, int(expected_rps * seconds * 1.5))
        order_ids = fixtures.orders_create_new(count=count, product=self.product)
        result = load_run(
            tool=self.tool,
            port=self.port,
            path=WEBHOOK_PATH,
            bodies=fixtures.confirmed_bodies(order_ids),
            concurrency=concurrency,
            seconds=seconds,
            groups=self.groups,
            interval_ms=interval_ms,
        )
        time.sleep(0.2)  # the last requests the client abandoned at its deadline finish server-side
        result["orders_provisioned"] = count
        result["verdicts"] = fixtures.notification_verdicts(order_ids)
        return result


def undisturbed(measure: Callable[[], dict[str, Any]], args: argparse.Namespace, what: str) -> dict[str, Any]:
    """Run `measure`; while other programs used more than --max-other-share of the machine
    meanwhile, run it again (at most --retries times) and keep the least disturbed result."""
    best = measure()
    for _ in range(args.retries):
        if best["other_cpu_share"] <= args.max_other_share:
            break
        print(f"  {what}: other programs used {best['other_cpu_share']:.0%} of the machine meanwhile; measuring again")
        again = measure()
        again["repeated"] = best.get("repeated", 0) + 1
        best = min(best, again, key=lambda run: run["other_cpu_share"])
    return best


def webhook_levels(bench: WebhookBench, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for concurrency in args.levels:
        floor = undisturbed(lambda c=concurrency: bench.floor(c, args.seconds), args, f"floor c={concurrency}")
        hook = undisturbed(
            lambda c=concurrency, rate=floor["rps"]: bench.webhook(c, args.seconds, expected_rps=rate),
            args,
            f"webhook c={concurrency}",
        )
        rows.append(
            {
                "concurrency": concurrency,
                "floor": floor,
                "webhook": hook,
                "ratio_rps": hook["rps"] / floor["rps"] if floor["rps"] else None,
            }
        )
        _print_level(rows[-1])
    return rows


def webhook_vs_provider_delay(bench: WebhookBench, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """The webhook with workers delivering in the background: provider at 1-3 s, and at 0 s.

    The load is paced at --compare-rate notifications/s, under what the workers deliver at
    1-3 s (C / mean delay), so both settings give the workers the same work and the server the
    same CPU left: a difference in latency would be the webhook waiting on the provider. The
    settings alternate over --compare-rounds rounds; each figure is the median of its rounds.
    """
    concurrency, rate = args.compare_concurrency, args.compare_rate
    seconds = args.seconds * 2
    interval_ms = concurrency * 1000 / rate
    settings = {"delay": (args.delay_min, args.delay_max), "zero": (0.0, 0.0)}
    runs: dict[str, list[dict[str, Any]]] = {"delay": [], "zero": []}
    for round_no in range(args.compare_rounds):
        for label in ("delay", "zero") if round_no % 2 == 0 else ("zero", "delay"):
            delay = settings[label]
            redis_flush(args.redis_url)
            workers = workers_start(args, env, delay=delay)
            bench.groups["workers"] = [proc.pid for proc in workers]
            try:
                workers_warm(bench.product, count=4 * args.worker_processes)
                run = undisturbed(
                    lambda: bench.webhook(concurrency, seconds, expected_rps=rate, interval_ms=interval_ms),
                    args,
                    f"webhook paced, provider delay {delay[0]:g}-{delay[1]:g} s",
                )
                run["worker_rss_mb"] = [round(rss_mb(proc.pid), 1) for proc in workers]
            finally:
                workers_stop(workers)
                bench.groups.pop("workers")
            runs[label].append(run)
            print(
                f"  webhook c={concurrency} at {rate:g} req/s with workers, provider delay {delay[0]:g}-{delay[1]:g} s:"
                f" mean {run['mean_ms']:.1f} ms, p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms"
            )
    redis_flush(args.redis_url)
    results: dict[str, Any] = {"concurrency": concurrency, "offered_rps": rate, "seconds": seconds}
    for label, label_runs in runs.items():
        results[label] = {
            key: statistics.median(run[key] for run in label_runs) for key in ("rps", "mean_ms", "p50_ms", "p99_ms")
        }
        results[label]["runs"] = label_runs
    for key in ("mean", "p50", "p99"):
        results[f"ratio_{key}"] = results["delay"][f"{key}_ms"] / results["zero"][f"{key}_ms"]
    return results


# --- delivery --------------------------------------------------------------------------------


def delivery_run(args: argparse.Namespace, env: dict[str, str], *, delay: tuple[float, float]) -> dict[str, Any]:
    from bench import fixtures
    from fulfillment.models import DeliveryAttempt
    from fulfillment.tasks import deliver_order

    redis_flush(args.redis_url)
    # Every delivery run starts on empty tables, whatever ran before it (the webhook runs leave
    # tens of thousands of rows, and autovacuum working on them).
    fixtures.tables_reset()
    product = fixtures.product_ensure()
    order_ids = fixtures.orders_create_paid(count=args.orders, product=product)
    workers = workers_start(args, env, delay=delay)
    in_flight = args.worker_processes * args.worker_threads
    mean_delay = (delay[0] + delay[1]) / 2
    limit = args.orders * mean_delay / in_flight
    peak_rss = [0.0] * len(workers)
    try:
        # Every order is queued before the workers may start on any: the limit assumes all the
        # work is there at once, and queueing from here is not the workers' time.
        control = deliver_order.app.control
        control.cancel_consumer("celery", reply=True)
        began = time.monotonic()
        with deliver_order.app.producer_or_acquire() as producer:
            for order_id in order_ids:
                deliver_order.apply_async((order_id,), producer=producer)
        queued_s = time.monotonic() - began
        started_wall = datetime.now(UTC)
        started = time.monotonic()
        control.add_consumer("celery", reply=True)
        deadline = started + max(60.0, limit * 5 + 30)
        done, last = 0, None
        while time.monotonic() < deadline:
            for index, proc in enumerate(workers):
                peak_rss[index] = max(peak_rss[index], rss_mb(proc.pid))
            done, last = fixtures.orders_fulfilled(order_ids)
            if done == len(order_ids):
                break
            time.sleep(0.1)
        end_rss = [round(rss_mb(proc.pid), 1) for proc in workers]
    finally:
        workers_stop(workers)
    elapsed = (last - started_wall).total_seconds() if last and done == len(order_ids) else None
    attempts = DeliveryAttempt.objects.filter(order_id__in=order_ids)
    durations = list(attempts.values_list("duration_ms", flat=True))
    starts = sorted(attempts.values_list("started_at", flat=True))
    # How long until C calls were in flight, and how busy the C slots were over the run.
    ramp = (starts[min(in_flight, len(starts)) - 1] - started_wall).total_seconds() if starts else None
    busy = (sum(durations) / 1000 / (in_flight * elapsed)) if elapsed and durations else None
    result = {
        "orders": len(order_ids),
        "units": len(order_ids),
        "delay_s": list(delay),
        "in_flight": in_flight,
        "worker_processes": args.worker_processes,
        "worker_threads": args.worker_threads,
        "queued_s": queued_s,
        "fulfilled": done,
        "elapsed_s": elapsed,
        "units_per_s": (len(order_ids) / elapsed) if elapsed else None,
        "attempts": len(durations),
        "mean_provider_call_s": (sum(durations) / len(durations) / 1000) if durations else None,
        "ramp_to_c_s": ramp,
        "slots_busy_fraction": busy,
        "worker_rss_peak_mb": [round(value, 1) for value in peak_rss],
        "worker_rss_end_mb": end_rss,
        "ledger": fixtures.ledger_check(order_ids),
    }
    if mean_delay:
        result["limit_s"] = limit
        result["fraction_of_limit"] = (limit / elapsed) if elapsed else None
    redis_flush(args.redis_url)
    return result


# --- report ----------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _print_level(row: dict[str, Any]) -> None:
    floor, hook = row["floor"], row["webhook"]
    print(
        f"  c={row['concurrency']:<3} floor {floor['rps']:7.0f} req/s p50 {floor['p50_ms']:6.1f} p99 "
        f"{floor['p99_ms']:6.1f} ms | webhook {hook['rps']:7.0f} req/s p50 {hook['p50_ms']:6.1f} p99 "
        f"{hook['p99_ms']:6.1f} ms | ratio {_fmt(row['ratio_rps'], 2)}"
    )


def machine_description() -> dict[str, Any]:
    import celery
    import django
    import gunicorn
    import psycopg

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    import redis

    redis_version = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).info("server").get("redis_version")
    wrk = shutil.which("wrk")
    wrk_version = None
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        wrk_version = (out.stdout + out.stderr).split("\n")[0].split(" [")[0]
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
        "celery": celery.__version__,
        "psycopg": psycopg.__version__,
        "postgresql": pg_version,
        "redis": redis_version,
        "wrk": wrk_version,
    }


def _target(name: str, value: Any, met: bool | None) -> dict[str, Any]:
    """`met` None: the run was too small to judge this target (a quick run)."""
    return {"target": name, "value": value, "met": met}


def targets_evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    levels = {row["concurrency"]: row for row in results.get("webhook", {}).get("levels", [])}
    row = levels.get(16)
    if row:
        # None: a load completed no request; that is a target missed, not a crash of the report.
        ratio, p99 = row["ratio_rps"], row["webhook"]["p99_ms"]
        targets.append(_target("webhook >= 0.5 x floor req/s at 16 clients", ratio, ratio is not None and ratio >= 0.5))
        targets.append(_target("webhook p99 < 50 ms at 16 clients", p99, p99 is not None and p99 < 50))
    compare = results.get("webhook", {}).get("provider_delay")
    if compare:
        # Judged on the typical latency (mean and median); p99 is reported beside it. One short
        # round (the quick run) is too few samples to judge a 10% difference.
        worst = max(compare["ratio_mean"], compare["ratio_p50"])
        met = worst <= 1.1 if len(compare["delay"]["runs"]) >= 3 else None
        targets.append(_target("webhook latency, provider 1-3 s / 0 s <= 1.1 (mean and p50)", worst, met))
    delivery = results.get("delivery", {}).get("delay")
    # With fewer than ~5 units per slot the limit is mostly the last call's delay (a quick run);
    # the target is set for 1000 orders at C=200.
    if delivery:
        fraction = delivery.get("fraction_of_limit")
        name = f"delivery >= 0.8 of the limit (C={delivery['in_flight']}, {delivery['orders']} orders)"
        met = bool(fraction and fraction >= 0.8) if delivery["orders"] >= 1000 else None
        targets.append(_target(name, fraction, met))
    for label in ("delay", "zero"):
        run = results.get("delivery", {}).get(label)
        if run:
            ledger = run["ledger"]
            once = ledger["delivered_once"] == ledger["units"] == run["units"]
            targets.append(_target(f"every unit delivered exactly once ({label} run)", ledger["delivered_once"], once))
    return targets


def report_print(results: dict[str, Any]) -> None:
    print()
    machine = results["machine"]
    print(
        f"Machine: {machine['nproc']} CPU ({machine['cpu_model']}), {machine['memory_gib']} GiB; Python "
        f"{machine['python']}, Django {machine['django']}, PostgreSQL {machine['postgresql']}, Redis {machine['redis']}"
    )
    webhook = results.get("webhook")
    if webhook:
        print(
            f"\nWebhook vs floor (load generator: {webhook['loadgen']}, {webhook['seconds']:g} s per run, "
            f"gunicorn {webhook['gunicorn']})"
        )
        print(
            f"{'clients':>7} | {'floor req/s':>11} {'p50 ms':>7} {'p99 ms':>7} | {'webhook req/s':>13} {'p50 ms':>7} "
            f"{'p99 ms':>7} | {'ratio':>5} | {'applied':>7}"
        )
        for row in webhook["levels"]:
            floor, hook = row["floor"], row["webhook"]
            # A load that completed no request (a server stalled by a busy machine) has no latency.
            print(
                f"{row['concurrency']:>7} | {floor['rps']:>11.0f} {_fmt(floor['p50_ms'], 2):>7} "
                f"{_fmt(floor['p99_ms'], 2):>7} | {hook['rps']:>13.0f} {_fmt(hook['p50_ms'], 2):>7} "
                f"{_fmt(hook['p99_ms'], 2):>7} | {_fmt(row['ratio_rps'], 2):>5} | "
                f"{hook['verdicts'].get('applied', 0):>7}"
            )
        compare = webhook.get("provider_delay")
        if compare:
            print(
                f"\nWebhook at {compare['concurrency']} clients paced at {compare['offered_rps']:g} req/s, "
                f"workers delivering in the background ({compare['seconds']:g} s per run, median of "
                f"{len(compare['delay']['runs'])} round(s))"
            )
            print(f"{'provider delay':>14} | {'req/s':>7} {'mean ms':>7} {'p50 ms':>7} {'p99 ms':>7}")
            for label, text in (
                ("delay", f"{results['config']['delay_s'][0]:g}-{results['config']['delay_s'][1]:g} s"),
                ("zero", "0 s"),
            ):
                run = compare[label]
                figures = " ".join(f"{run[key]:>7.2f}" for key in ("mean_ms", "p50_ms", "p99_ms"))
                print(f"{text:>14} | {run['rps']:>7.0f} {figures}")
            print(
                f"{'ratio':>14} | {'':>7} {compare['ratio_mean']:>7.2f} {compare['ratio_p50']:>7.2f} "
                f"{compare['ratio_p99']:>7.2f}"
            )
    delivery = results.get("delivery")
    if delivery:
        print("\nDelivery (mock provider, no failures)")
        print(
            f"{'delay':>7} | {'units':>5} | {'C':>4} | {'limit s':>7} | {'took s':>6} | {'of limit':>8} | "
            f"{'units/s':>7} | {'once':>5} | {'worker RSS MiB (peak)':>21}"
        )
        for label in ("delay", "zero"):
            run = delivery.get(label)
            if not run:
                continue
            text = f"{run['delay_s'][0]:g}-{run['delay_s'][1]:g} s" if label == "delay" else "0 s"
            print(
                f"{text:>7} | {run['units']:>5} | {run['in_flight']:>4} | {_fmt(run.get('limit_s')):>7} | "
                f"{_fmt(run['elapsed_s'], 2):>6} | {_fmt(run.get('fraction_of_limit'), 2):>8} | "
                f"{_fmt(run['units_per_s'], 0):>7} | {run['ledger']['delivered_once']:>5} | "
                f"{', '.join(_fmt(v, 0) for v in run['worker_rss_peak_mb']):>21}"
            )
    print("\nTargets")
    for target in results["targets"]:
        value = target["value"]
        verdict = {True: "met", False: "NOT MET", None: "not judged: quick run"}[target["met"]]
        print(f"  [{verdict}] {target['target']}: {_fmt(value, 2)}")


def report_markdown(results: dict[str, Any]) -> str:
    """The same figures as Markdown tables, for docs/benchmarks.md (`--render FILE`)."""
    lines = []
    machine = results["machine"]
    lines.append(
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), {machine['memory_gib']} GiB, kernel "
        f"{machine['kernel']}; Python {machine['python']}, Django {machine['django']}, gunicorn "
        f"{machine['gunicorn']}, Celery {machine['celery']}, psycopg {machine['psycopg']}, PostgreSQL "
        f"{machine['postgresql']}, Redis {machine['redis']}, {machine['wrk'] or 'no wrk'}. Run {results['started_at']} "
        f"({results['mode']}), {results.get('wall_s', '?')} s."
    )
    webhook = results.get("webhook")
    if webhook:
        lines += [
            "",
            f"Webhook vs floor: {webhook['seconds']:g} s per load, load generator {webhook['loadgen']}, gunicorn "
            f"{webhook['gunicorn']}, no delivery workers running.",
            "",
            "| clients | floor req/s | floor p50 / p99 ms | webhook req/s | webhook p50 / p99 ms | webhook / floor "
            "| server CPU ms/req (floor / webhook) | other programs' CPU |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in webhook["levels"]:
            floor, hook = row["floor"], row["webhook"]
            cpu_f, cpu_w = floor["cpu_ms_per_request"], hook["cpu_ms_per_request"]
            other = max(floor.get("other_cpu_share", 0), hook.get("other_cpu_share", 0))
            lines.append(
                f"| {row['concurrency']} | {floor['rps']:.0f} | {_fmt(floor['p50_ms'])} / {_fmt(floor['p99_ms'])} | "
                f"{hook['rps']:.0f} | {_fmt(hook['p50_ms'])} / {_fmt(hook['p99_ms'])} | "
                f"**{_fmt(row['ratio_rps'], 2)}** | "
                f"{cpu_f.get('server', 0):.2f} / {cpu_w.get('server', 0):.2f} | up to {other:.0%} |"
            )
        compare = webhook.get("provider_delay")
        if compare:
            delay = results["config"]["delay_s"]
            lines += [
                "",
                f"Webhook with workers delivering in the background: {compare['concurrency']} clients paced at "
                f"{compare['offered_rps']:g} req/s, {compare['seconds']:g} s per run, median of "
                f"{len(compare['delay']['runs'])} alternating round(s).",
                "",
                "| provider delay | req/s | mean ms | p50 ms | p99 ms |",
                "|---|---:|---:|---:|---:|",
            ]
            for label, text in (("delay", f"{delay[0]:g}-{delay[1]:g} s"), ("zero", "0 s")):
                run = compare[label]
                lines.append(
                    f"| {text} | {run['rps']:.0f} | {run['mean_ms']:.1f} | {run['p50_ms']:.1f} | {run['p99_ms']:.1f} |"
                )
            lines.append(
                f"| **ratio** | | **{compare['ratio_mean']:.2f}** | **{compare['ratio_p50']:.2f}** | "
                f"{compare['ratio_p99']:.2f} |"
            )
    delivery = results.get("delivery")
    if delivery:
        lines += [
            "",
            "Delivery: one unit per order, mock provider without failures.",
            "",
            "| provider delay | units | C | limit s | took s | of limit | units/s | ramp to C s "
            "| delivered exactly once | worker RSS MiB (peak) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label in ("delay", "zero"):
            run = delivery.get(label)
            if not run:
                continue
            text = f"{run['delay_s'][0]:g}-{run['delay_s'][1]:g} s" if label == "delay" else "0 s"
            fraction = run.get("fraction_of_limit")
            lines.append(
                f"| {text} | {run['units']} | {run['in_flight']} | {_fmt(run.get('limit_s'))} | "
                f"{_fmt(run['elapsed_s'], 2)} | {f'**{fraction:.2f}**' if fraction else '-'} | "
                f"{_fmt(run['units_per_s'], 0)} | {_fmt(run.get('ramp_to_c_s'), 2)} | "
                f"{run['ledger']['delivered_once']} / {run['units']} | "
                f"{' + '.join(_fmt(v, 0) for v in run['worker_rss_peak_mb'])} |"
            )
    lines += ["", "| target | value | met |", "|---|---:|---|"]
    for target in results["targets"]:
        verdict = {True: "yes", False: "**no**", None: "not judged (quick run)"}[target["met"]]
        lines.append(f"| {target['target']} | {_fmt(target['value'], 2)} | {verdict} |")
    return "\n".join(lines) + "\n"


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        sys.stdout.write(report_markdown(json.loads(args.render.read_text())))
        return 0
    VAR.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _on_signal)
    atexit.register(PROCESSES.stop_all)
    began = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "started_at": stamp,
        "mode": ("quick" if args.quick else "full") + (" (tiny: sizes for CI, not figures)" if args.tiny else ""),
    }
    try:
        services_ensure(args)
        database_ensure(args.database_url)
        env = {**os.environ, **bench_environment(args)}
        django_setup(env)
        from django.core.management import call_command

        from bench import fixtures

        call_command("migrate", verbosity=0, interactive=False)
        fixtures.tables_reset()
        redis_flush(args.redis_url)
        results["machine"] = machine_description()
        results["config"] = {
            "levels": args.levels,
            "seconds": args.seconds,
            "orders": args.orders,
            "worker_processes": args.worker_processes,
            "worker_threads": args.worker_threads,
            "worker_pool_size": args.worker_pool_size,
            "gunicorn_workers": args.gunicorn_workers,
            "gunicorn_threads": args.gunicorn_threads,
            "delay_s": [args.delay_min, args.delay_max],
        }
        product = fixtures.product_ensure()
        if not args.skip_webhook:
            tool = loadgen_choose(args.loadgen)
            server = gunicorn_start(args, env)
            kind = f"{args.gunicorn_workers} workers" + (
                f" x {args.gunicorn_threads} threads (gthread)" if args.gunicorn_threads > 1 else " (sync)"
            )
            print(f"gunicorn on {LOOPBACK}:{server.port}, {kind}; load generator: {tool}")
            if tool == "python":
                print(
                    "  Note: wrk is not installed (apt-get install wrk). The Python load generator needs more CPU "
                    "per request and caps the floor's rate first, so webhook/floor reads higher than with wrk."
                )
            bench = WebhookBench(args, tool, server.port, product, groups={"server": [server.proc.pid]})
            bench.floor_bodies = fixtures.floor_bodies(1000)
            # Warm-up: every gunicorn worker imports and connects before anything is measured.
            bench.floor(args.gunicorn_workers * 2, 1.0)
            bench.webhook(args.gunicorn_workers * 2, 1.0, expected_rps=2000)
            results["webhook"] = {
                "loadgen": tool,
                "seconds": args.seconds,
                "gunicorn": kind,
                "levels": webhook_levels(bench, args),
            }
            if args.compare_rounds > 0:
                results["webhook"]["provider_delay"] = webhook_vs_provider_delay(bench, args, env)
            PROCESSES.stop(server.proc)
        if not args.skip_delivery:
            results["delivery"] = {}
            for label, delay in (("delay", (args.delay_min, args.delay_max)), ("zero", (0.0, 0.0))):
                run = delivery_run(args, env, delay=delay)
                results["delivery"][label] = run
                print(
                    f"  delivery, provider delay {delay[0]:g}-{delay[1]:g} s: {run['units']} units in "
                    f"{_fmt(run['elapsed_s'], 2)} s ({_fmt(run['units_per_s'], 0)} units/s), "
                    f"fraction of limit {_fmt(run.get('fraction_of_limit'), 2)}, "
                    f"delivered once {run['ledger']['delivered_once']}/{run['units']}"
                )
        results["targets"] = targets_evaluate(results)
        results["wall_s"] = round(time.monotonic() - began, 1)
    finally:
        PROCESSES.stop_all()
    output = args.output or VAR / f"results-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    output.write_text(text)
    latest = ROOT / "bench" / "results" / "latest.json"
    latest.parent.mkdir(parents=True, exist_ok=True)
    latest.write_text(text)
    report_print(results)
    print(f"\nResults: {output} (and {latest.relative_to(ROOT)}); took {results['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
