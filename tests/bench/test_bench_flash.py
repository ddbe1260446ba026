"""`make bench-flash` end to end at its tiny size, so that the harness cannot rot unnoticed: it
starts the fake bank and gunicorn with the committed gunicorn.conf.py, runs both rounds, prints
the Targets block, and drops its database. Missed targets do not fail this test (a tiny run on
a busy CI machine judges nothing); a crash, a missing figure or a wrong answer does.

Needs PostgreSQL (TEST_POSTGRES_URL, as in .ci/run); skipped without it unless REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.parse
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TARGETS = (
    "orders/s at 500 ms >= 0.8 x at 0 ms",
    "webhook p99 during the sale < 250 ms in every round",
    "catalogue p99 during the sale < 1000 ms in every round",
)


def _postgres() -> str:
    postgres = os.environ.get("TEST_POSTGRES_URL") or os.environ.get("DATABASE_URL", "")
    problem = None
    if not postgres.startswith(("postgres://", "postgresql://")):
        problem = "no PostgreSQL (set TEST_POSTGRES_URL)"
    else:
        import psycopg

        try:
            psycopg.connect(_maintenance(postgres), connect_timeout=3).close()
        except psycopg.Error as exc:
            problem = f"PostgreSQL does not answer ({type(exc).__name__})"
    if problem:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {problem}", pytrace=False)
        pytest.skip(f"needs PostgreSQL: {problem}")
    return postgres


def _maintenance(postgres: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(postgres)._replace(path="/postgres"))


def _database_exists(postgres: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(_maintenance(postgres)) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_a_tiny_flash_sale_runs_both_rounds_prints_the_targets_and_drops_its_database(tmp_path):
    postgres = _postgres()
    name = f"bench_flash_test_{os.getpid()}"
    url = urllib.parse.urlunsplit(urllib.parse.urlsplit(postgres)._replace(path=f"/{name}"))
    output = tmp_path / "flash.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "DJANGO_"))}

    run = subprocess.run(
        ["make", "--no-print-directory", "bench-flash", f"BENCH_ARGS=--tiny --database-url={url} --output={output}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert not _database_exists(postgres, name), "the benchmark left its database behind"
    assert "\nTargets" in run.stdout, run.stdout[-4000:]
    block = run.stdout.split("\nTargets", 1)[1]
    for target in TARGETS:
        assert re.search(rf"^  \[(met|missed)\] {re.escape(target)}: ", block, re.MULTILINE), target

    results = json.loads(output.read_text())
    assert "gunicorn -c gunicorn.conf.py" in results["web"]
    assert [run["delay_ms"] for run in results["rounds"]] == [0, 500]
    for round_ in results["rounds"]:
        checkout, webhook, catalogue = round_["checkout"], round_["webhook"], round_["catalogue"]
        # Every client asked at least once; the shop answered each request as the API says.
        assert sum(checkout["statuses"].values()) >= results["clients"]
        assert set(checkout["statuses"]) <= {"201", "503"}, checkout["statuses"]
        assert webhook["answered"] >= 1 and set(webhook["statuses"]) == {"200"}, webhook["statuses"]
        assert catalogue["answered"] >= 1 and set(catalogue["statuses"]) == {"200"}, catalogue["statuses"]
        # Each 201 the clients saw is one order in the database with its payment link.
        database = round_["database"]
        assert database["answered_201"] == checkout["statuses"].get("201", 0) == database["payments"]
