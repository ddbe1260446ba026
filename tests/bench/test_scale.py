"""`make bench-scale` end to end at its tiny size (BENCH_ARGS=--tiny), so that the harness cannot
rot unnoticed: it creates and loads its database and the baseline, measures every admin page it
finds through gunicorn and the sweep on both, the webhook, prints the Targets block (each target
a ratio to the baseline), and drops its databases. Judges no figure: a tiny run measures nothing.

Needs PostgreSQL and Redis (TEST_POSTGRES_URL / TEST_REDIS_URL, as in .ci/run); skipped
without them unless REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TARGETS = (
    "every admin page p50 <= 2 x at 100 orders",
    "every order search p50 <= 2 x at 100 orders",
    "every order search finds the order searched for",
    "reconciliation sweep p50 <= 2 x at 100 orders",
    "webhook on the loaded database >= 0.9 x on an empty one",
)


def _services() -> tuple[str, str]:
    postgres = os.environ.get("TEST_POSTGRES_URL") or os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("TEST_REDIS_URL") or os.environ.get("CELERY_BROKER_URL", "")
    problem = None
    if not postgres.startswith(("postgres://", "postgresql://")):
        problem = "no PostgreSQL (set TEST_POSTGRES_URL)"
    elif not broker.startswith("redis://"):
        problem = "no Redis (set TEST_REDIS_URL)"
    else:
        import psycopg
        import redis

        try:
            psycopg.connect(_maintenance(postgres), connect_timeout=3).close()
            redis.Redis.from_url(broker, socket_timeout=3).ping()
        except (psycopg.Error, redis.RedisError) as exc:
            problem = f"the services do not answer ({type(exc).__name__})"
    if problem:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {problem}", pytrace=False)
        pytest.skip(f"needs PostgreSQL + Redis: {problem}")
    return postgres, broker


def make_command(target: str, bench_args: str) -> list[str]:
    """`make <target>` with BENCH_ARGS, through this interpreter's virtualenv, without reinstalling
    it (the stamp is taken as up to date: CI installed it before the tests)."""
    return [
        "make",
        "--no-print-directory",
        "-o",
        ".venv/.installed-stamp",
        target,
        f"BIN={Path(sys.executable).parent}",
        f"BENCH_ARGS={bench_args}",
    ]


def _maintenance(postgres: str) -> str:
    """The server's own `postgres` database: the URL's database need not exist (pytest-django
    makes test_<name>, and the harness makes its own)."""
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(postgres)._replace(path="/postgres"))


def _databases(postgres: str, prefix: str) -> list[str]:
    import psycopg

    with psycopg.connect(_maintenance(postgres)) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)).fetchall()
    return [row[0] for row in rows]


def test_a_tiny_run_measures_everything_prints_the_targets_and_drops_its_databases(tmp_path):
    postgres, broker = _services()
    name = f"bench_scale_test_{os.getpid()}"
    url = urllib.parse.urlunsplit(urllib.parse.urlsplit(postgres)._replace(path=f"/{name}"))
    output = tmp_path / "scale.json"
    command = make_command("bench-scale", f"--tiny --database-url={url} --redis-url={broker} --output={output}")
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert not _databases(postgres, name), "the benchmark left its databases behind"
    assert "\nTargets" in run.stdout, run.stdout[-4000:]
    block = run.stdout.split("\nTargets", 1)[1]
    for target in TARGETS:
        assert re.search(rf"^  \[(met|NOT MET)\] {re.escape(target)}", block, re.MULTILINE), target
    results = json.loads(output.read_text())
    assert results["mode"] == "tiny"
    assert results["data"]["rows"]["orders"] == 300
    assert results["baseline"]["data"]["rows"]["orders"] == 100
    assert results["data"]["rows"]["notifications"] == 600
    assert results["admin"]["hot_attempts"] == 120
    pages = results["admin"]["pages"]
    assert not [page for page in pages if page.get("error")], "a page did not answer 200"
    # The filters were read from the pages: every list offers some, and each was measured.
    for listing in ("order list", "notification list", "unit (delivery) list", "attempt list"):
        unfiltered = next(page for page in pages if page["name"] == f"{listing}, unfiltered")
        measured = [page for page in pages if page["kind"] == "filter" and page["name"].startswith(listing + ":")]
        assert unfiltered["filters"] > 0 and len(measured) == unfiltered["filters"], listing
    assert any(page["name"] == "order list: status = Paid" for page in pages)
    searches = [page for page in pages if page["kind"] == "search"]
    assert len(searches) == 5 and all(page["found"] and page["baseline_found"] for page in searches)
    # Every page of the large database was measured on the baseline too, and judged by the ratio.
    assert all(page["ratio"] == page["p50_ms"] / page["baseline_p50_ms"] for page in pages)
    assert results["baseline"]["sweep"]["p50_ms"] > 0
    for label in ("empty", "loaded"):
        webhook = results["webhook"][label]
        # Every answered notification paid its order; a request the load generator abandoned at its
        # deadline may still be applied by the server, so applied can exceed the answers. (How
        # many a 1 s load completes depends on the machine: not asserted.)
        assert webhook["applied"] >= webhook["requests"], label
    assert results["explained"][-1]["what"] == "reconciliation sweep"
    assert (tmp_path / "scale.md").read_text().startswith("Run ")
