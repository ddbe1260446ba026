"""Flash sale: does a slow bank stall the web process? (`make bench-flash`)

The web process exactly as deployed (`gunicorn -c gunicorn.conf.py fulfillment_site.wsgi`)
against a throwaway PostgreSQL database and a fake T-Bank (tests/fakes/tbank_server.py in its
own process) that answers every call after a configurable delay. Each round (bank delay 0 ms,
then 500 ms by default) runs, at the same time, for --seconds:

* --clients customers creating orders (`POST /api/orders`, each waiting for the bank's Init);
* one probe asking the catalogue (`GET /api/products`) and posting the bank's signed
  CONFIRMED notifications to the webhook, alternately, every 50 ms.

It prints orders/s, checkout p50/p99, and webhook and catalogue p50/p99 during the sale per
round, then a Targets block: orders/s with the slow bank >= 0.8 x with the fast one (capacity
must not depend on the bank's latency), webhook p99 < 250 ms and catalogue p99 < 1 s in every
round. `--tiny` runs a few clients for 2 s per round (the CI test: the harness works end to
end; its figures judge nothing). Every process it starts is stopped and the database dropped
at the end, whatever happens. See docs/benchmarks.md#flash-sale.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fulfillment_bench_flash"

TARGET_RATIO = 0.8
TARGET_WEBHOOK_P99_MS = 250.0
TARGET_CATALOGUE_P99_MS = 1000.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Flash sale against a slow bank: orders/s and machine endpoints.")
    parser.add_argument("--tiny", action="store_true", help="4 clients, 2 s per round: checks the harness only.")
    parser.add_argument("--clients", type=int, help="Customers creating orders at once (default 64; tiny: 4).")
    parser.add_argument("--seconds", type=float, help="Length of each round (default 15; tiny: 2).")
    parser.add_argument("--delays-ms", default="0,500", help="Bank delay of each round, ms, comma separated.")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_FLASH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="Throwaway PostgreSQL database: created (dropped first if it exists) and dropped at the end.",
    )
    parser.add_argument("--keep-database", action="store_true", help="Leave the database in place at the end.")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Extra environment of the web process (e.g. WEB_CONCURRENCY=4, GUNICORN_THREADS=16); repeatable.",
    )
    parser.add_argument("--output", type=Path, help="JSON results file (default var/bench/flash-<time>.json).")
    args = parser.parse_args(argv)
    args.clients = args.clients or (4 if args.tiny else 64)
    args.seconds = args.seconds or (2.0 if args.tiny else 15.0)
    try:
        args.delays = [float(part) for part in args.delays_ms.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--delays-ms {args.delays_ms!r}: give milliseconds separated by commas, e.g. 0,500.")
    if len(args.delays) < 2 or args.delays[0] != 0:
        parser.error("--delays-ms must start with 0 (the baseline) and name at least one slower round, e.g. 0,500.")
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients must be at least 1 and --seconds above 0.")
    host = args.database_url.split("@")[-1].split("//")[-1].split(":")[0].split("/")[0]
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        parser.error(f"{args.database_url}: the benchmark only runs against a database on loopback.")
    for item in args.env:
        if "=" not in item:
            parser.error(f"--env {item!r}: write NAME=VALUE.")
    return args


# --- processes -------------------------------------------------------------------------------


class Processes:
    """Every process started here, each in its own process group, stopped on exit."""

    def __init__(self) -> None:
        self.running: dict[int, subprocess.Popen] = {}

    def start(self, command: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.running[proc.pid] = proc
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 15.0) -> None:
        self.running.pop(proc.pid, None)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace)
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in list(self.running.values()):
            self.stop(proc)


PROCESSES = Processes()


def _on_signal(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited at startup (exit {proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    sys.exit(f"{what} did not answer within {timeout:g} s; see {log}.")


# --- database --------------------------------------------------------------------------------


def _maintenance_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


def database_recreate(url: str, *, drop_only: bool = False) -> None:
    import psycopg
    from psycopg import sql

    name = _database_name(url)
    try:
        with psycopg.connect(_maintenance_url(url), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            if not drop_only:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        sys.exit(
            f"PostgreSQL at {_maintenance_url(url)} does not answer ({exc}). Start it, or pass --database-url "
            "(or BENCH_FLASH_DATABASE_URL) naming a server on loopback."
        )


# --- environment -----------------------------------------------------------------------------


def web_environment(args: argparse.Namespace, var: Path) -> dict[str, str]:
    """Production settings on the benchmark database, set explicitly (nothing from a .env)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "PYTEST"))}
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "CHECKOUT_MAX_IN_FLIGHT", "GUNICORN_BIND", "PORT"):
        env.pop(name, None)  # the committed defaults, unless --env says otherwise
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "fulfillment_site.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "VAR_DIR": str(var),
            "DATABASE_URL": args.database_url,
            # No worker runs: the webhook's delivery tasks wait in a filesystem queue.
            "CELERY_BROKER_URL": "filesystem://localhost//",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "TBANK_TERMINAL_KEY": "FlashTerminal",
            "TBANK_PASSWORD": secrets.token_urlsafe(24),
            "TBANK_SANDBOX": "false",
            "TBANK_ALLOWED_NETWORKS": "",
            "TBANK_TIMEOUT_SECONDS": "15",
            "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
            # Every client comes from 127.0.0.1: the per-address throttle would measure itself.
            "ORDER_CREATE_THROTTLE_RATE": "1000000/s",
            "FULFILLMENT_PROVIDER": "mock",
            "FULFILLMENT_EXTRA_PROVIDERS": "",
            "BENCHMARK_FLOOR_ENDPOINT": "false",
        }
    )
    env.update(item.split("=", 1) for item in args.env)
    return env


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def fixtures_make(notifications: int) -> tuple[int, list[str]]:
    """The product on sale, and signed CONFIRMED notifications for that many NEW orders."""
    from bench import fixtures

    product = fixtures.product_ensure()
    order_ids = fixtures.orders_create_new(count=notifications, product=product)
    return product.pk, fixtures.confirmed_bodies(order_ids)


def round_check(tag: str) -> dict[str, int]:
    """What the round left in the database: its orders and the payment links they got."""
    from orders.models import IdempotencyKey, Payment

    keys = IdempotencyKey.objects.filter(key__startswith=f"flash-{tag}-")
    return {
        "orders": keys.count(),
        "answered_201": keys.filter(response_status=201).count(),
        "payments": Payment.objects.filter(order__idempotency_keys__key__startswith=f"flash-{tag}-").count(),
    }


# --- CPU of the machine ----------------------------------------------------------------------


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    tick = os.sysconf("SC_CLK_TCK")
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / tick, sum(values) / tick


def group_cpu(pgids: list[int], database: str) -> float:
    """CPU seconds used so far by these process groups and this database's PostgreSQL backends."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if int(fields[2]) in pgids or (comm == "postgres" and f" {database} ".encode() in cmdline):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


# --- one round -------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def load_start(role: str, args_list: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "bench" / "flash_load.py"), role, *args_list]
    return PROCESSES.start(command, env=env, log=log)


def load_result(proc: subprocess.Popen, log: Path, timeout: float) -> dict[str, Any]:
    try:
        proc.wait(timeout=timeout)
    finally:
        PROCESSES.stop(proc)
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"A load process failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    return json.loads(lines[-1])


def round_run(
    args: argparse.Namespace, env: dict[str, str], var: Path, delay_ms: float, product: int, bodies: list[str]
) -> dict[str, Any]:
    tag = f"d{delay_ms:g}-{secrets.token_hex(3)}"
    logs = var / "logs"
    bank_port, web_port = free_port(), free_port()
    bank_log, web_log = logs / f"bank-{tag}.log", logs / f"gunicorn-{tag}.log"
    bank = PROCESSES.start(
        [sys.executable, "-m", "tests.fakes.tbank_server", "--port", str(bank_port)]
        # NAME=VALUE: a random password may begin with "-", which argparse would take for an option.
        + [f"--terminal-key={env['TBANK_TERMINAL_KEY']}", f"--password={env['TBANK_PASSWORD']}"]
        + ["--delay-ms", f"{delay_ms:g}"],
        env=env,
        log=bank_log,
    )
    wait_for(f"http://{LOOPBACK}:{bank_port}/", bank, bank_log, "The fake bank")
    web_env = {**env, "TBANK_API_URL": f"http://{LOOPBACK}:{bank_port}/v2/"}
    web = PROCESSES.start(
        [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "fulfillment_site.wsgi"]
        + ["-b", f"{LOOPBACK}:{web_port}"],
        env=web_env,
        log=web_log,
    )
    try:
        wait_for(f"http://{LOOPBACK}:{web_port}/api/products", web, web_log, "gunicorn")
        bodies_file = var / f"bodies-{tag}.jsonl"
        bodies_file.write_text("\n".join(bodies) + "\n")
        common = ["--port", str(web_port)]
        # Warm-up: every worker imports, connects and fills its pool before the measured sale.
        warm_start = time.time() + 0.5
        warm = load_start(
            "checkout",
            [*common, "--start", str(warm_start), "--seconds", "1.5", "--clients", "8"]
            + ["--product", str(product), "--tag", f"warm-{tag}"],
            env,
            logs / f"warm-{tag}.log",
        )
        load_result(warm, logs / f"warm-{tag}.log", 120)

        start = time.time() + 1.0
        seconds = str(args.seconds)
        checkout_log, probe_log = logs / f"checkout-{tag}.log", logs / f"probe-{tag}.log"
        checkout = load_start(
            "checkout",
            [*common, "--start", str(start), "--seconds", seconds, "--clients", str(args.clients)]
            + ["--product", str(product), "--tag", tag],
            env,
            checkout_log,
        )
        probe = load_start(
            "probe",
            [*common, "--start", str(start), "--seconds", seconds, "--bodies", str(bodies_file)],
            env,
            probe_log,
        )
        time.sleep(max(0.0, start - time.time()))
        database = _database_name(args.database_url)
        pgids = [web.pid, bank.pid, checkout.pid, probe.pid]
        busy_before, total_before = machine_busy()
        ours_before = group_cpu(pgids, database)
        load_before = os.getloadavg()[0]
        time.sleep(args.seconds)
        busy_after, total_after = machine_busy()
        ours_after = group_cpu(pgids, database)
        sales = load_result(checkout, checkout_log, args.seconds + 180)
        probes = load_result(probe, probe_log, args.seconds + 180)
    finally:
        PROCESSES.stop(web)
        PROCESSES.stop(bank)
    cores = os.cpu_count() or 1
    wall = (total_after - total_before) / cores or args.seconds
    other = max(0.0, (busy_after - busy_before) - (ours_after - ours_before))
    kinds = {**sales["kinds"], **probes["kinds"]}
    result: dict[str, Any] = {
        "delay_ms": delay_ms,
        "clients": args.clients,
        "seconds": args.seconds,
        "machine_busy_share": round((busy_after - busy_before) / (cores * wall), 3),
        "other_programs_share": round(other / (cores * wall), 3),
        "load_average_at_start": round(load_before, 2),
        "database": round_check(tag),
    }
    for kind in ("checkout", "webhook", "catalogue"):
        entry = kinds.get(kind, {"latencies_ms": [], "statuses": {}, "ok_in_window": 0})
        latencies = entry["latencies_ms"]
        result[kind] = {
            "answered": len(latencies),
            "statuses": entry["statuses"],
            "p50_ms": percentile(latencies, 0.50),
            "p90_ms": percentile(latencies, 0.90),
            "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies) if latencies else None,
            "mean_ms": round(statistics.fmean(latencies), 2) if latencies else None,
        }
    result["orders_per_s"] = kinds.get("checkout", {}).get("ok_in_window", 0) / args.seconds
    return result


# --- report ----------------------------------------------------------------------------------


def targets_evaluate(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = rounds[0]
    targets = []
    for slow in rounds[1:]:
        ratio = slow["orders_per_s"] / base["orders_per_s"] if base["orders_per_s"] else 0.0
        targets.append(
            {
                "target": f"orders/s at {slow['delay_ms']:g} ms >= {TARGET_RATIO} x at 0 ms",
                "value": round(ratio, 2),
                "met": ratio >= TARGET_RATIO,
            }
        )
    for kind, limit in (("webhook", TARGET_WEBHOOK_P99_MS), ("catalogue", TARGET_CATALOGUE_P99_MS)):
        worst = [run[kind]["p99_ms"] for run in rounds]
        missing = any(value is None for value in worst)
        value = None if missing else max(worst)
        targets.append(
            {
                "target": f"{kind} p99 during the sale < {limit:g} ms in every round",
                "value": value,
                "met": (not missing) and value < limit,
            }
        )
    return targets


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def report_print(results: dict[str, Any]) -> None:
    machine = results["machine"]
    print(
        f"\nMachine: {machine['nproc']} CPU ({machine['cpu_model']}), Python {machine['python']}, "
        f"PostgreSQL {machine['postgresql']}; web: {results['web']}"
    )
    print(
        f"Flash sale: {results['clients']} clients creating orders + 1 probe (catalogue / webhook every 50 ms), "
        f"{results['seconds']:g} s per round"
    )
    header = (
        f"{'bank delay':>10} | {'orders/s':>8} | {'checkout p50/p99 ms':>19} | {'busy 503':>8} | {'other':>6} | "
        f"{'webhook p50/p99 ms (n)':>22} | {'catalogue p50/p99 ms (n)':>24} | {'other CPU':>9}"
    )
    print(header)
    for run in results["rounds"]:
        checkout, hook, catalogue = run["checkout"], run["webhook"], run["catalogue"]
        hook_text = f"{_ms(hook['p50_ms'])} / {_ms(hook['p99_ms'])} ({hook['answered']})"
        catalogue_text = f"{_ms(catalogue['p50_ms'])} / {_ms(catalogue['p99_ms'])} ({catalogue['answered']})"
        checkout_text = f"{_ms(checkout['p50_ms'])} / {_ms(checkout['p99_ms'])}"
        busy = checkout["statuses"].get("503", 0)
        other = sum(n for status, n in checkout["statuses"].items() if status not in ("201", "503"))
        hook_bad = sum(n for status, n in hook["statuses"].items() if status != "200")
        print(
            f"{run['delay_ms']:>8g}ms | {run['orders_per_s']:>8.1f} | "
            f"{checkout_text:>19} | {busy:>8} | {other:>6} | {hook_text:>22} | {catalogue_text:>24} | "
            f"{run['other_programs_share']:>9.0%}"
        )
        if hook_bad:
            print(f"{'':>10}   webhook answers other than 200: {hook['statuses']}")
        if other:
            print(f"{'':>10}   checkout answers other than 201/503: {checkout['statuses']}")
    print("\nTargets" + (" (tiny run: the harness works; these figures judge nothing)" if results["tiny"] else ""))
    for target in results["targets"]:
        value = target["value"]
        shown = "-" if value is None else (f"{value:.2f}" if "orders/s" in target["target"] else f"{value:.0f} ms")
        print(f"  [{'met' if target['met'] else 'missed'}] {target['target']}: {shown}")


def machine_description() -> dict[str, Any]:
    from django.db import connection

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    connection.close()
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(), "postgresql": pg_version}


def web_description(env: dict[str, str]) -> str:
    """The web process's shape as gunicorn.conf.py resolves it with this environment."""
    probe = (
        "import runpy, json; c = runpy.run_path('gunicorn.conf.py'); "
        "print(json.dumps({k: c[k] for k in ('workers', 'threads', 'worker_class')}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    shape = json.loads(out.stdout)
    threads = int(shape["threads"])
    gate = env.get("CHECKOUT_MAX_IN_FLIGHT") or "default"
    return (
        f"gunicorn -c gunicorn.conf.py: {shape['workers']} x {threads} threads ({shape['worker_class']}), "
        f"checkout gate {gate}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    atexit.register(PROCESSES.stop_all)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
    var = Path(tempfile.mkdtemp(prefix="flash-", dir=ROOT / "var" / "bench"))
    (var / "logs").mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    print(f"Flash sale benchmark: database {_database_name(args.database_url)}, logs in {var / 'logs'}")
    database_recreate(args.database_url)
    try:
        env = web_environment(args, var)
        django_setup(env)
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0, interactive=False)
        # Enough notifications for the probe in every round (it posts one every 100 ms).
        per_round = int(args.seconds * 10) + 20
        product, bodies = fixtures_make(per_round * len(args.delays))
        results: dict[str, Any] = {
            "started_at": stamp,
            "tiny": args.tiny,
            "clients": args.clients,
            "seconds": args.seconds,
            "machine": machine_description(),
            "web": web_description(env),
            "rounds": [],
        }
        print(results["web"])
        for index, delay in enumerate(args.delays):
            print(f"Round {index + 1}/{len(args.delays)}: bank answers after {delay:g} ms ...", flush=True)
            run = round_run(args, env, var, delay, product, bodies[index * per_round : (index + 1) * per_round])
            results["rounds"].append(run)
            print(
                f"  {run['orders_per_s']:.1f} orders/s; checkout p99 {_ms(run['checkout']['p99_ms'])} ms; webhook p99 "
                f"{_ms(run['webhook']['p99_ms'])} ms; catalogue p99 {_ms(run['catalogue']['p99_ms'])} ms",
                flush=True,
            )
        results["targets"] = targets_evaluate(results["rounds"])
        results["wall_s"] = round(time.monotonic() - began, 1)
        connection.close()
    finally:
        PROCESSES.stop_all()
        if not args.keep_database:
            database_recreate(args.database_url, drop_only=True)
    output = args.output or ROOT / "var" / "bench" / f"flash-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    shutil.rmtree(var, ignore_errors=True)  # the logs are kept only when the run failed
    report_print(results)
    print(f"\nResults: {output}; took {results['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
