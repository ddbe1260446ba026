"""`make bench-catalog`: the storefront's catalogue (GET /api/products, /api/categories, /api/brands)
on 10,000 products, against a baseline measured in the same run.

Fills a throwaway database as `make bench-reprice` does (a SQLite file, or `--database-url` for a
PostgreSQL database it creates and drops), prices it by the rules, then requests each catalogue
answer `--repeat` times in-process through Django's test client (the view, the queries and the
JSON; no network): the first page, a category, a brand, a search, a deep page, a revalidation
with If-None-Match (304), the categories and the brands. The baseline is the cheapest answer of
the same stack: GET /api/orders/<unknown id> (one indexed lookup, 404). Prints p50 and p95 and the
queries of each answer, and a Targets block: every catalogue answer's p50 < 30 ms (the issue's
figure for 10,000 products) and <= 10 x the baseline's (a ratio, which travels between machines).
`--tiny` (CI): 300 products, 5 requests each. Exits 0 whatever the figures: it is a report.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reprice import _create_postgres, _drop_postgres, _fill, _reprice, _setup  # noqa: E402

P50_TARGET_MS = 30.0
RATIO_TARGET = 10.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The catalogue API on 10,000 products against an order status lookup.")
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=50, help="Requests per answer measured (default 50).")
    parser.add_argument("--tiny", action="store_true", help="300 products, 5 requests each: checks the harness only.")
    parser.add_argument("--database-url", default="", help="A PostgreSQL database to create, fill and drop.")
    args = parser.parse_args(argv)
    if args.tiny:
        args.products, args.repeat = 300, 5
    return args


def _measure(client, path: str, params: dict, repeat: int, headers: dict | None = None) -> dict:
    from django.db import connection

    headers = headers or {}
    response = client.get(path, params, **headers)  # warm: the first request compiles and caches
    expected = response.status_code
    captured = []
    with connection.execute_wrapper(lambda execute, sql, *rest: captured.append(sql) or execute(sql, *rest)):
        client.get(path, params, **headers)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path, params, **headers)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != expected:
            raise SystemExit(f"{path} {params} answered {response.status_code}, then {expected}")
    times.sort()
    return {
        "status": expected,
        "queries": len(captured),
        "p50": statistics.median(times),
        "p95": times[min(len(times) - 1, int(len(times) * 0.95))],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as folder:
        created = _create_postgres(args.database_url) if args.database_url else None
        try:
            _setup(args.database_url or f"sqlite:///{Path(folder) / 'catalog.sqlite3'}")
            return _run(args)
        finally:
            if created:
                _drop_postgres(created)


def _run(args: argparse.Namespace) -> int:
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from orders.models import Brand, Category, Product

    settings.ALLOWED_HOSTS = ["*"]
    # One connection for the whole run, as a production worker keeps (CONN_MAX_AGE): the test client
    # would otherwise close and reopen it around every request, and measure that.
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    print(f"Catalogue API on {args.products:,} products ({connection.vendor}), {args.repeat} requests per answer")
    _fill(args.products)
    _reprice("0.0050")
    Product.objects.update(is_active=True)
    client = Client()
    category = Category.objects.order_by("pk").first().pk
    brand = Brand.objects.order_by("pk").first().pk
    first = client.get("/api/products")
    if first.status_code != 200 or len(first.json()) != min(100, args.products):
        print(f"  the first page is wrong: HTTP {first.status_code}")
        return 1
    deep = max(1, args.products // 100)
    cases = [
        # The floor: one indexed lookup through the same API stack (an unknown order, 404).
        ("baseline: order status 404", "/api/orders/0123456789abcdef01234567", {"token": "x" * 32}, None),
        ("products, first page", "/api/products", {}, None),
        ("products of a category", "/api/products", {"category": category}, None),
        ("products of a brand", "/api/products", {"brand": brand}, None),
        ("products, search", "/api/products", {"search": "Product 12"}, None),
        (f"products, page {deep}", "/api/products", {"page": deep}, None),
        ("products, revalidated (304)", "/api/products", {}, {"HTTP_IF_NONE_MATCH": first["ETag"]}),
        ("categories", "/api/categories", {}, None),
        ("brands", "/api/brands", {}, None),
    ]
    results = {name: _measure(client, path, params, args.repeat, headers) for name, path, params, headers in cases}
    print(f"{'answer':<30} | {'HTTP':>4} | {'queries':>7} | {'p50 ms':>7} | {'p95 ms':>7}")
    for name, result in results.items():
        status, queries, p50, p95 = result["status"], result["queries"], result["p50"], result["p95"]
        print(f"{name:<30} | {status:>4} | {queries:>7} | {p50:>7.2f} | {p95:>7.2f}")
    baseline = results.pop("baseline: order status 404")["p50"]
    worst_name, worst = max(results.items(), key=lambda item: item[1]["p50"])
    print("\nTargets" + (" (tiny run: the harness works; these figures judge nothing)" if args.tiny else ""))
    scaled = worst["p50"]
    print(
        f"  [{'met' if scaled < P50_TARGET_MS else 'missed'}] every catalogue answer p50 < {P50_TARGET_MS:g} ms: "
        f"{scaled:.2f} ms ({worst_name})"
    )
    ratio = worst["p50"] / baseline if baseline else float("inf")
    print(
        f"  [{'met' if ratio <= RATIO_TARGET else 'missed'}] every catalogue answer p50 <= {RATIO_TARGET:g} x "
        f"an order status 404: {ratio:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
