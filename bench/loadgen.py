"""Fallback load generator for bench/run.py when wrk is not installed.

Runs as its own process: one thread per client, each with a keep-alive HTTP/1.1 connection
(reopened when the server closes it), POSTing its share of the bodies file (one JSON body a
line) for a fixed time, then prints the same JSON line as bench/webhook.lua. Python's GIL
makes it a heavier client than wrk, which is why wrk is preferred.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument(
        "--interval-ms", type=float, default=0.0, help="Pause of each client after each answer (paced load)."
    )
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("The load generator only targets loopback addresses.")

    bodies = [line.encode() for line in args.bodies.read_text().splitlines() if line]
    shares = [bodies[i :: args.concurrency] for i in range(args.concurrency)]
    latencies: list[list[float]] = [[] for _ in range(args.concurrency)]
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    wrapped = [0] * args.concurrency
    lock = threading.Lock()
    start = threading.Barrier(args.concurrency + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        share = shares[index] or bodies
        conn = http.client.HTTPConnection(args.host, args.port, timeout=10)
        position = 0
        start.wait()
        while time.perf_counter() < deadline[0]:
            if position == len(share):
                position, wrapped[index] = 0, wrapped[index] + 1
            body = share[position]
            position += 1
            began = time.perf_counter()
            try:
                conn.request("POST", args.path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
            except TimeoutError:
                kind = "timeout"
            except ConnectionRefusedError:
                kind = "connect"
            except (OSError, http.client.HTTPException):
                kind = "read"
            else:
                latencies[index].append(time.perf_counter() - began)
                if response.status > 399:
                    with lock:
                        errors["status"] += 1
                if response.will_close:
                    conn.close()
                if args.interval_ms:
                    time.sleep(args.interval_ms / 1000)
                continue
            with lock:
                errors[kind] += 1
            conn.close()
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.concurrency)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + args.seconds
    start.wait()
    for thread in threads:
        thread.join()
    duration = time.perf_counter() - began
    ordered = sorted(value for values in latencies for value in values)
    result = {
        "requests": len(ordered),
        "duration_s": duration,
        "p50_ms": _percentile(ordered, 0.50) * 1000,
        "p99_ms": _percentile(ordered, 0.99) * 1000,
        "mean_ms": (sum(ordered) / len(ordered) * 1000) if ordered else 0.0,
        "max_ms": (ordered[-1] * 1000) if ordered else 0.0,
        "errors": errors,
        "wrapped": sum(wrapped),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
