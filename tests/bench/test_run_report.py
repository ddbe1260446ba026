"""bench/run.py's pure parts: judging the targets and printing a run, also a disturbed one."""

from __future__ import annotations

from bench.run import report_markdown, report_print, targets_evaluate


def _load(rps: float, p99: float | None) -> dict:
    return {
        "rps": rps,
        "p50_ms": p99,
        "p99_ms": p99,
        "verdicts": {"applied": int(rps)},
        "cpu_ms_per_request": {},
        "other_cpu_share": 0.9,
    }


def _results(floor_rps: float, floor_p99: float | None) -> dict:
    floor, hook = _load(floor_rps, floor_p99), _load(300.0, 45.0)
    ratio = 300.0 / floor_rps if floor_rps else None
    return {
        "started_at": "20261202T000000Z",
        "mode": "quick",
        "machine": dict.fromkeys(
            ("nproc", "cpu_model", "memory_gib", "kernel", "python", "django", "gunicorn", "celery", "psycopg"), "x"
        )
        | {"postgresql": "15", "redis": "7", "wrk": None},
        "webhook": {
            "loadgen": "wrk",
            "seconds": 2,
            "gunicorn": "4 workers (sync)",
            "levels": [{"concurrency": 16, "floor": floor, "webhook": hook, "ratio_rps": ratio}],
        },
    }


def test_the_webhook_targets_are_judged_at_16_clients():
    targets = {target["target"]: target for target in targets_evaluate(_results(500.0, 20.0))}

    assert targets["webhook >= 0.5 x floor req/s at 16 clients"]["met"]  # 300 / 500 = 0.6
    assert targets["webhook p99 < 50 ms at 16 clients"]["met"]
    assert not targets_evaluate(_results(700.0, 20.0))[0]["met"]  # 0.43


def test_a_floor_load_that_completed_no_request_is_a_missed_target_not_a_crash(capsys):
    # Seen on a machine busy with other programs: the floor's one connection got no answer in 2 s.
    results = _results(0.0, None)
    results["targets"] = targets_evaluate(results)

    report_print(results)
    markdown = report_markdown(results)

    assert results["targets"][0] == {
        "target": "webhook >= 0.5 x floor req/s at 16 clients",
        "value": None,
        "met": False,
    }
    assert "[NOT MET] webhook >= 0.5 x floor req/s at 16 clients: -" in capsys.readouterr().out
    assert "| 16 | 0 | - / - | 300 |" in markdown
