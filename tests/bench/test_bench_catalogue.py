"""`make bench-reprice` and `make bench-catalog` end to end at their tiny size (BENCH_ARGS=--tiny),
each on its own throwaway SQLite file: the harness runs, the scripts' own checks hold (every product
repriced and every change recorded; every answer as expected), and each prints its figures and
Targets block. The figures of a tiny run judge nothing."""

from __future__ import annotations

import os
import subprocess

from tests.bench.test_scale import ROOT


def run_tiny(target: str) -> str:
    """`make <target> BENCH_ARGS=--tiny` on the defaults (no DATABASE_URL): its output, or a failure."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_URL", "DJANGO_"))}
    result = subprocess.run(
        ["make", "--no-print-directory", target, "BENCH_ARGS=--tiny"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_a_tiny_reprice_benchmark_runs_and_prints_its_targets():
    out = run_tiny("bench-reprice")

    assert "Repricing 300 products (sqlite)" in out
    assert "price changes recorded:    300" in out
    assert "Targets (tiny run" in out
    assert "reprice of 10,000 products < 5 s:" in out
    assert "reprice <= 4 x a bare bulk update:" in out


def test_a_tiny_catalogue_benchmark_runs_and_prints_its_targets():
    out = run_tiny("bench-catalog")

    assert "Catalogue API on 300 products (sqlite)" in out
    assert "products, revalidated (304)    |  304 |" in out
    assert "Targets (tiny run" in out
    assert "every catalogue answer p50 < 30 ms:" in out
