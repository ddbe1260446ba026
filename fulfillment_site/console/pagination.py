"""A paginator for tables of millions of rows: it counts exactly only up to a cap.

Django's paginator runs COUNT(*) over the whole filtered table, which on a million orders costs
more than the page itself. This one counts at most CAP + 1 rows (an index range, a few
milliseconds); past that it takes the planner's estimate on PostgreSQL (EXPLAIN, no scan) and
says the number is approximate. SQLite has no estimate and counts exactly (development only).
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    cap = 1_000

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not hasattr(queryset, "query"):
            return super().count
        ids = queryset.order_by().values("pk")
        exact = ids[: self.cap + 1].count()
        if exact <= self.cap:
            return exact
        estimate = _planner_estimate(ids)
        if estimate is None:
            return ids.count()
        self.estimated = True
        return max(estimate, self.cap + 1)


def _planner_estimate(queryset) -> int | None:
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class HugeTableAdminMixin:
    """For the admin of a table of millions of rows: no full COUNT(*), capped counts instead, and no
    "Show counts" (facets: one COUNT over the table per filter choice)."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
