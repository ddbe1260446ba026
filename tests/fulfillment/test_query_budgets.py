"""Query budget of the delivery engine: fulfill_order runs a + b x units SQL statements, with a
and b fixed, however the units are spread over items (counts, not times)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fulfillment.services import OrderNotFulfillable, fulfill_order

pytestmark = pytest.mark.django_db

# Per run: the order's status, the claim (a transaction: select the due units with their item
# and product, stamp the claim), the products' backup SKUs (routing), the halts, the unit counts,
# the order's status again and the transition to FULFILLED with the codes email's outbox row (one
# INSERT, in its transaction).
PER_RUN = 11
# Per unit: WAITING -> SENDING, then a transaction holding the attempt INSERT and the unit's
# UPDATE. The provider under test touches no database, so this is the engine's own cost.
PER_UNIT = 5


def _statements(paid_order_factory, quantities: tuple[int, ...]) -> int:
    order = paid_order_factory(quantities=quantities)
    with CaptureQueriesContext(connection) as queries:
        report = fulfill_order(order.pk)
    assert report.complete
    assert report.units_delivered == sum(quantities)
    return len(queries.captured_queries)


@pytest.mark.parametrize("spread", ["one item of n units", "n items of one unit"])
def test_fulfill_order_runs_a_plus_b_statements_per_unit(paid_order_factory, scripted_provider, spread):
    counts = {}
    for units in (1, 2, 5):
        quantities = (units,) if spread == "one item of n units" else (1,) * units
        counts[units] = _statements(paid_order_factory, quantities)

    per_unit = counts[2] - counts[1]
    per_run = counts[1] - per_unit
    assert counts[5] == per_run + 5 * per_unit  # linear: nothing grows faster than the units
    assert (per_run, per_unit) == (PER_RUN, PER_UNIT)
    assert len(scripted_provider.calls) == 1 + 2 + 5


def test_a_fulfilled_order_is_refused_after_one_query(paid_order_factory, scripted_provider):
    order = paid_order_factory(quantities=(5,) * 4)
    assert fulfill_order(order.pk).complete
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(OrderNotFulfillable):
            fulfill_order(order.pk)
    assert len(queries.captured_queries) == 1
