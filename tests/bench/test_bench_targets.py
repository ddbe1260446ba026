"""Every `make bench*` target runs end to end in CI at its tiny size (BENCH_ARGS=--tiny): a harness
that crashes, or stops printing its Targets block, fails here instead of rotting unseen (as
`make bench` did, KeyError in its fixtures, for weeks). The figures of a tiny run mean nothing and
are never judged; what is checked is that every step ran and that the run's own correctness checks
(every notification applied, every unit delivered once) held.

`make bench-scale` is run by test_scale.py. Needs PostgreSQL and Redis (TEST_POSTGRES_URL /
TEST_REDIS_URL, as in .ci/run); skipped without them unless REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.bench.test_scale import ROOT, _services, make_command

WEBHOOK_TARGETS = ("webhook >= 0.5 x floor req/s at 16 clients", "webhook p99 < 50 ms at 16 clients")
DELIVERY_TARGETS = (
    "webhook latency, provider",
    "delivery >= 0.8 of the limit",
    "every unit delivered exactly once (delay run)",
    "every unit delivered exactly once (zero run)",
)


def _bench_urls(postgres: str, broker: str) -> tuple[str, str]:
    """The harness's own database next to the test's, on the broker's Redis database."""
    parts = urllib.parse.urlsplit(postgres)
    name = f"{parts.path.lstrip('/') or 'fulfillment'}_bench_{os.getpid()}"
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}")), broker


def _run(target: str, bench_args: str, tmp_path: Path) -> tuple[str, dict]:
    postgres, broker = _services()
    database_url, redis_url = _bench_urls(postgres, broker)
    output = tmp_path / "results.json"
    command = make_command(
        target, f"--tiny {bench_args} --database-url={database_url} --redis-url={redis_url} --output={output}"
    )
    try:
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    finally:
        _database_drop(database_url)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "\nTargets\n" in run.stdout, "no Targets block:\n" + run.stdout[-4000:]
    return run.stdout.split("\nTargets\n", 1)[1], json.loads(output.read_text())


def _database_drop(url: str) -> None:
    import psycopg
    from psycopg import sql

    name = urllib.parse.urlsplit(url).path.lstrip("/")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _assert_targets(block: str, names: tuple[str, ...]) -> None:
    for name in names:
        assert re.search(rf"^  \[(met|NOT MET|not judged[^\]]*)\] {re.escape(name)}", block, re.MULTILINE), name


def _assert_webhook_levels(results: dict) -> None:
    # How many requests a 1 s load completes depends on the machine (a busy one has stalled a
    # single connection for 2 s): counts are not asserted, only that every load ran and that
    # every notification the server answered paid its order (nothing duplicate or refused; one
    # abandoned at the load's deadline may still have been applied).
    levels = results["webhook"]["levels"]
    assert [row["concurrency"] for row in levels] == [1, 16]
    for row in levels:
        for load in (row["floor"], row["webhook"]):
            assert {"requests", "rps", "p99_ms", "cpu_ms_per_request"} <= set(load)
        assert set(row["webhook"]["verdicts"]) <= {"applied"}, row["webhook"]["verdicts"]
        assert row["webhook"]["verdicts"].get("applied", 0) >= row["webhook"]["requests"]


@pytest.mark.integration
def test_bench_quick_runs_every_step_at_the_tiny_size(tmp_path):
    block, results = _run("bench-quick", "", tmp_path)

    _assert_targets(block, WEBHOOK_TARGETS + DELIVERY_TARGETS)
    assert results["mode"].startswith("quick (tiny")
    _assert_webhook_levels(results)
    compare = results["webhook"]["provider_delay"]
    assert len(compare["delay"]["runs"]) == len(compare["zero"]["runs"]) == 1
    for label in ("delay", "zero"):
        run = results["delivery"][label]
        assert run["fulfilled"] == run["orders"] == 20
        assert run["ledger"]["delivered_once"] == run["units"] == 20, run["ledger"]


@pytest.mark.integration
def test_bench_runs_its_full_mode_at_the_tiny_size(tmp_path):
    # The full run differs from the quick one only in its sizes and in which targets it judges;
    # its webhook levels are enough to run its own make target and mode (the rest runs above).
    block, results = _run("bench", "--skip-delivery --compare-rounds=0", tmp_path)

    _assert_targets(block, WEBHOOK_TARGETS)
    assert results["mode"].startswith("full (tiny")
    _assert_webhook_levels(results)


def test_every_bench_make_target_is_run_by_a_test():
    """A `bench*` target added to the Makefile without a tiny run in tests/bench fails here."""
    makefile = (ROOT / "Makefile").read_text()
    targets = re.findall(r"^(bench[\w-]*):", makefile, re.MULTILINE)
    tests = "\n".join(path.read_text() for path in (ROOT / "tests" / "bench").glob("test_*.py"))

    assert {"bench", "bench-quick", "bench-scale"} <= set(targets)
    for target in targets:
        recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1)
        scripts = re.findall(r"bench/\w+\.py", recipe)
        assert f'"{target}"' in tests or any(script in tests for script in scripts), (
            f"make {target} is not run by any test in tests/bench: add one at a tiny size"
        )
