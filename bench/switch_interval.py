"""Why gunicorn.conf.py sets a 1 ms interpreter-lock switch interval in every web worker.

A request that makes many short database queries (the webhook) gives up the interpreter lock
at every query and must take it back afterwards. In a process where other threads are busy
running Python (checkouts), taking it back waits for the switch interval (5 ms by default)
each time. This prints how long 20 such "queries" (0.5 ms waits with a little Python work
between them) take beside 0, 2 and 4 busy threads, at 5 ms and at 1 ms, and the ratio to the
idle process. Usage: `.venv/bin/python bench/switch_interval.py`.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time


def _busy(stop: threading.Event) -> None:
    counter = 0
    while not stop.is_set():
        for _ in range(10000):
            counter += 1


def _request(queries: int = 20) -> float:
    began = time.perf_counter()
    for _ in range(queries):
        time.sleep(0.0005)  # a query: the lock is released while waiting
        sum(range(2000))  # a little Python work between queries
    return (time.perf_counter() - began) * 1000


def main() -> int:
    print(f"{'switch interval':>15} | {'busy threads':>12} | {'p50 ms':>7} | {'max ms':>7} | {'p50 / idle':>10}")
    for interval in (0.005, 0.001):
        sys.setswitchinterval(interval)
        idle = None
        for busy in (0, 2, 4):
            stop = threading.Event()
            threads = [threading.Thread(target=_busy, args=(stop,)) for _ in range(busy)]
            for thread in threads:
                thread.start()
            time.sleep(0.2)
            samples = [_request() for _ in range(30)]
            stop.set()
            for thread in threads:
                thread.join()
            p50 = statistics.median(samples)
            idle = idle or p50
            print(f"{interval * 1000:>12g} ms | {busy:>12} | {p50:>7.0f} | {max(samples):>7.0f} | {p50 / idle:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
