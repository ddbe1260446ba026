"""bench/scale.py's pure parts: reading filter links off a changelist page, and judging targets."""

from __future__ import annotations

from bench.scale import filter_links, pages_to_explain, targets_evaluate

CHANGELIST = """
<div id="content-main">
  <a href="?o=1">sort by id</a>
  <nav class="toplinks"><a href="?created_at__year=2025">2025</a> <a href="?created_at__year=2026">2026</a></nav>
  <nav id="changelist-filter" aria-labelledby="changelist-filter-header">
    <h2 id="changelist-filter-header">Filter</h2>
    <div id="changelist-filter-extra-actions"><h3><a href="?_facets=True" class="viewlink">Show counts</a></h3></div>
    <details data-filter-title="status" open>
      <summary> By status </summary>
      <ul>
        <li class="selected"><a href="?">All</a></li>
        <li><a href="?status__exact=paid">Paid</a></li>
        <li><a href="?status__exact=new&amp;o=1">New</a></li>
      </ul>
    </details>
    <details data-filter-title="needs attention" open>
      <summary> By needs attention </summary>
      <ul><li><a href="/admin/orders/order/?attention=yes">Yes</a></li><li><a href="?bank_status=">(empty)</a></li></ul>
    </details>
  </nav>
</div>
"""


def test_filter_links_are_every_choice_of_the_sidebar_and_the_date_hierarchy():
    links = filter_links(CHANGELIST)

    assert links == [
        ("date hierarchy = 2025", "?created_at__year=2025"),
        ("date hierarchy = 2026", "?created_at__year=2026"),
        ("status = Paid", "?status__exact=paid"),
        ("status = New", "?status__exact=new&o=1"),  # HTML entities decoded
        ("needs attention = Yes", "/admin/orders/order/?attention=yes"),
        ("needs attention = (empty)", "?bank_status="),
    ]  # not the selected "All", not "Show counts", not the column sort link


def _page(name: str, kind: str, p50: float | None, **extra) -> dict:
    return {"name": name, "kind": kind, "p50_ms": p50, "p95_ms": p50, "n": 7, "path": "/x", **extra}


def test_targets_name_every_page_over_its_target_and_the_errors():
    results = {
        "admin": {
            "pages": [
                _page("order list, unfiltered", "page", 120.0),
                _page("order list: status = Paid", "filter", 450.0),
                _page("attempt list, unfiltered", "page", None, error="HTTP 500"),
                _page("order search by id", "search", 80.0, found=True),
                _page("order search by email", "search", 310.0, found=False),
            ]
        },
        "sweep": {"p50_ms": 12.0},
        "webhook": {"ratio": 0.85, "loaded": {"rps": 170.0}, "empty": {"rps": 200.0}},
    }

    targets = {target["target"]: target for target in targets_evaluate(results)}

    pages = targets["every admin page p50 < 300 ms"]
    assert not pages["met"]
    assert [row["name"] for row in pages["failing"]] == ["attempt list, unfiltered", "order list: status = Paid"]
    assert pages["value"].startswith("1 of 3 within")
    assert not targets["every order search p50 < 300 ms"]["met"]
    assert not targets["every order search finds the order searched for"]["met"]
    assert targets["reconciliation sweep p50 < 20 ms"]["met"]
    assert not targets["webhook on the loaded database >= 0.9 x on an empty one (req/s)"]["met"]


def test_plans_are_taken_for_the_slowest_page_of_each_group_over_target():
    pages = [
        _page("order list, unfiltered", "page", 400.0),
        _page("order list: status = Paid", "filter", 900.0),
        _page("order list: status = New", "filter", 100.0),
        _page("order search by id", "search", 5000.0),
        _page("order search by email", "search", 6000.0),
        _page("admin index (dashboard)", "page", 20.0),
    ]

    chosen = [page["name"] for page in pages_to_explain(pages, per_group=1)]

    assert chosen == ["order search by email", "order list: status = Paid"]
