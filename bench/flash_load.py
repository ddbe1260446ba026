"""Clients of the flash-sale benchmark (bench/flash.py), each role in its own process.

* `checkout`: N clients, each creating orders one after another (`POST /api/orders`, a new
  Idempotency-Key per order); a `503` with Retry-After (the shop is full) is repeated with the
  same key after the wait it asks for.
* `probe`: one client that, every --interval-ms, alternately asks the catalogue
  (`GET /api/products`) and posts the next signed T-Bank notification (--bodies, one a line).

Both open a new connection per request, as the bank and a proxy without upstream keep-alive
do, so requests spread over every gunicorn worker. They start together at --start (epoch
seconds), stop starting requests after --seconds, and print one JSON line: per kind, the
latencies of the answers and the statuses.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path

TIMEOUT_S = 60.0


def request(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]):
    """One request on a new connection: (status, headers, body, seconds) or (kind of error, ...)."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), data, time.perf_counter() - began
    except TimeoutError:
        return "timeout", {}, b"", time.perf_counter() - began
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, {}, b"", time.perf_counter() - began
    finally:
        conn.close()


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kinds: dict[str, dict] = {}

    def add(self, kind: str, status, seconds: float, *, ok: bool, finished_in_window: bool) -> None:
        with self.lock:
            entry = self.kinds.setdefault(kind, {"latencies_ms": [], "statuses": {}, "ok_in_window": 0})
            entry["statuses"][str(status)] = entry["statuses"].get(str(status), 0) + 1
            if ok:
                entry["latencies_ms"].append(round(seconds * 1000, 2))
                entry["ok_in_window"] += int(finished_in_window)


def checkout_client(args, index: int, recorder: Recorder, deadline: float) -> None:
    number = 0
    while number == 0 or time.time() < deadline:  # at least one order, however late it started
        number += 1
        key = f"flash-{args.tag}-{index}-{number}"
        body = json.dumps(
            {
                "email": f"flash{index}@example.com",
                "items": [{"product": args.product, "quantity": 1, "recipient": "12345678"}],
            }
        ).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        while True:
            status, answer_headers, _, seconds = request(args.port, "POST", "/api/orders", body, headers)
            recorder.add("checkout", status, seconds, ok=status == 201, finished_in_window=time.time() <= deadline)
            if status == 503 and answer_headers.get("Retry-After", "").isdigit() and time.time() < deadline:
                # The shop is full: the same order again after the wait it asked for.
                time.sleep(min(float(answer_headers["Retry-After"]), max(0.0, deadline - time.time())))
                if time.time() < deadline:
                    continue
            break


def probe_client(args, recorder: Recorder, deadline: float) -> None:
    bodies = [line.encode() for line in Path(args.bodies).read_text().splitlines() if line]
    position = 0
    turn = 0
    while turn < 2 or time.time() < deadline:  # at least one of each, however late it started
        began = time.time()
        if turn % 2 == 0:
            status, _, _, seconds = request(args.port, "GET", "/api/products", None, {})
            recorder.add("catalogue", status, seconds, ok=status == 200, finished_in_window=True)
        elif position < len(bodies):
            body = bodies[position]
            position += 1
            headers = {"Content-Type": "application/json"}
            status, _, _, seconds = request(args.port, "POST", "/api/payments/tbank/notification", body, headers)
            recorder.add("webhook", status, seconds, ok=status == 200, finished_in_window=True)
        turn += 1
        pause = args.interval_ms / 1000 - (time.time() - began)
        if pause > 0:
            time.sleep(pause)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=("checkout", "probe"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--start", type=float, required=True, help="Epoch seconds at which to begin.")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--product", type=int, help="checkout: the product ordered.")
    parser.add_argument("--tag", default="run", help="checkout: makes this run's Idempotency-Keys unique.")
    parser.add_argument("--bodies", help="probe: signed notifications, one JSON body a line.")
    parser.add_argument("--interval-ms", type=float, default=50.0, help="probe: time between its requests.")
    args = parser.parse_args(argv)

    recorder = Recorder()
    deadline = args.start + args.seconds
    if args.role == "checkout":
        targets = [lambda i=i: checkout_client(args, i, recorder, deadline) for i in range(args.clients)]
    else:
        targets = [lambda: probe_client(args, recorder, deadline)]
    time.sleep(max(0.0, args.start - time.time()))
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.seconds + TIMEOUT_S * 2)
    sys.stdout.write(json.dumps({"role": args.role, "seconds": args.seconds, "kinds": recorder.kinds}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
