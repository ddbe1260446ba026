"""`make contract`: is the API what its OpenAPI schema says? Schemathesis against a server started here.

Starts a fake T-Bank, migrates a throwaway database (SQLite in a temporary folder, or with
--database-url a PostgreSQL database created for the run and dropped after it), loads the contract
catalogue, starts gunicorn with DEBUG off, and runs `st run <server>/api/schema/` with every
check and every phase (stateful included), a random seed unless --seed is given, and more
examples than CI. Prints Schemathesis' progress, then a summary with the command that repeats
the run. Exit status: Schemathesis'.

    make contract
    make contract CONTRACT_ARGS="--seed 4242 --max-examples 500"
    make contract CONTRACT_ARGS="--database-url postgres://postgres@127.0.0.1:5432/contract_me"
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.contract import (  # noqa: E402 - the project root is importable only from here on
    schemathesis_command,
    schemathesis_run,
    server_env,
)
from tests.fakes.tbank_server import FakeTBank  # noqa: E402

BIN = Path(sys.executable).parent
TERMINAL_KEY = "ContractTerminal"
TERMINAL_PASSWORD = "contract-run-terminal-password"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, help="Schemathesis seed (default: a random one, printed).")
    parser.add_argument("--max-examples", type=int, default=200, help="Test cases per operation and phase.")
    parser.add_argument(
        "--database-url",
        help="A PostgreSQL URL whose database is created for the run and dropped after it (default: SQLite).",
    )
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres"))


def postgres_database(url: str, *, create: bool) -> None:
    """Create (dropping any leftover of a previous run) or drop the database of `url`."""
    import psycopg
    from psycopg import sql

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def base_env(tmp: Path, database_url: str) -> dict[str, str]:
    # No worker runs (orders stay NEW): the default broker, a folder under VAR_DIR, never a real one.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DJANGO_") and key not in ("CELERY_BROKER_URL", "CACHE_URL")
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "fulfillment_site.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "contract-run-secret-key-not-for-production",
            "DATABASE_URL": database_url,
            "VAR_DIR": str(tmp / "var"),
            "TBANK_TERMINAL_KEY": TERMINAL_KEY,
            "TBANK_PASSWORD": TERMINAL_PASSWORD,
            "TBANK_ALLOWED_NETWORKS": "",
            "FULFILLMENT_PROVIDER": "mock",
            "EMAIL_URL": "consolemail://",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def gunicorn_start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    command = [str(BIN / "gunicorn"), "fulfillment_site.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"]
    command += ["--threads", "4", "--timeout", "60", "--access-logfile", "-"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"gunicorn exited at startup; see {log}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/schema/", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    sys.exit(f"gunicorn did not serve /api/schema/ within 60 s; see {log}.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    with tempfile.TemporaryDirectory(prefix="contract-") as folder:
        tmp = Path(folder)
        database_url = args.database_url or f"sqlite:///{tmp / 'contract.sqlite3'}"
        if args.database_url:
            postgres_database(database_url, create=True)
        web = None
        started = time.monotonic()
        try:
            with FakeTBank(terminal_key=TERMINAL_KEY, password=TERMINAL_PASSWORD) as bank:
                port = free_port()
                env = base_env(tmp, database_url)
                env.update(server_env(bank_api_url=bank.api_url, public_base_url=f"http://127.0.0.1:{port}"))
                print(f"Contract run: database {database_url.split('@')[-1]}, fake T-Bank at {bank.api_url}")
                manage(env, "migrate", "--noinput")
                manage(env, "shell", "-c", "from tests.contract import catalogue_load; catalogue_load()")
                web = gunicorn_start(env, port, tmp / "gunicorn.log")
                base_url = f"http://127.0.0.1:{port}"
                print(f"Server: {base_url} (gunicorn, DEBUG off). Schemathesis, seed {seed}:", flush=True)
                command = schemathesis_command(base_url, seed=seed, max_examples=args.max_examples)
                run = schemathesis_run(command, echo=True)
                orders = len(bank.calls("Init"))
        finally:
            if web is not None and web.poll() is None:
                os.killpg(web.pid, signal.SIGTERM)
                web.wait(timeout=10)
            if args.database_url:
                postgres_database(database_url, create=False)
    verdict = "PASSED: the API is what its schema says" if run.passed else "FAILED: see the failures above"
    print(
        f"\nContract {verdict}. Seed {seed}, at most {args.max_examples} examples per operation and phase, "
        f"{orders} order(s) sent to the fake bank, {time.monotonic() - started:.0f} s.\n"
        f"Repeat this run: make contract CONTRACT_ARGS='--seed {seed} --max-examples {args.max_examples}'"
    )
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
