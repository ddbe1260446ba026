"""What a reconciliation sweep costs when it runs every few seconds for ever: its queries must
start from an index (not walk every order), deliveries carry no redundant index, and a sweep
that finds nothing leaves nothing in the log."""

import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fulfillment.models import Delivery, DeliveryStatus
from fulfillment.services import paid_orders_reconcile
from fulfillment_site.celery import QUIET_PERIODIC_TASKS, QuietPeriodicTasks

pytestmark = pytest.mark.django_db


def test_sweep_queries_on_orders_are_unordered(paid_order_factory, queued_deliveries):
    """Order's Meta.ordering (-id) plus a LIMIT let PostgreSQL read the primary key backwards
    through every order looking for the rare match (470 ms on 200,000 orders, 2% paid, against
    21 ms from the status index): the sweep's order queries must not ask for an order."""
    done = paid_order_factory()
    Delivery.objects.filter(order=done).update(status=DeliveryStatus.DELIVERED)
    with CaptureQueriesContext(connection) as queries:
        paid_orders_reconcile()
    searches = [
        q["sql"]
        for q in queries.captured_queries
        if 'FROM "orders_order"' in q["sql"] and 'WHERE "orders_order"."id" = ' not in q["sql"]  # not a pk look-up
    ]
    assert len(searches) == 2, "the sweep looks for paid orders without units, and with every unit delivered"
    assert not [sql for sql in searches if "ORDER BY" in sql], searches
    done.refresh_from_db()
    assert done.status == "fulfilled"  # the query still finds what it is for


def test_the_index_of_units_failed_by_a_fault_covers_every_scope_the_sweep_asks_for():
    """The sweep asks for failed units of every scope that is not the unit's fault; an index whose
    condition misses one (PRICE, added later) is never used, and the sweep walks every failed unit
    (4,844 at a million orders: its slowest statement, 10 ms)."""
    from fulfillment.providers.base import NOT_THE_UNITS_SCOPES

    index = next(index for index in Delivery._meta.indexes if index.name == "delivery_failed_by_fault")
    conditions = dict(index.condition.children)
    assert conditions["status"] == DeliveryStatus.FAILED
    assert sorted(conditions["failure_scope__in"]) == sorted(NOT_THE_UNITS_SCOPES)


def test_deliveries_have_no_single_column_order_index():
    """delivery_order_status (order_id, status) serves every look-up by order."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Delivery._meta.db_table)
    indexes = {name: c["columns"] for name, c in constraints.items() if c["index"] and not c["primary_key"]}
    assert ["order_id"] not in indexes.values(), indexes
    assert ["order_id", "status"] in indexes.values(), indexes


def test_a_sweep_that_finds_nothing_logs_nothing(db, caplog):
    caplog.set_level(logging.INFO)
    assert paid_orders_reconcile() == []
    assert caplog.records == []


def _celery_lines(task: str) -> list[tuple[str, str, tuple]]:
    """The INFO lines Celery writes for every run of `task` (beat, then the worker)."""
    from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

    context = {"name": task, "id": "5f0c", "runtime": 0.01, "return_value": "[]"}
    return [
        ("celery.beat", "Scheduler: Sending due task %s (%s)", ("reconcile paid orders", task)),
        ("celery.worker.strategy", LOG_RECEIVED, (context,)),
        ("celery.app.trace", LOG_SUCCESS, (context,)),
    ]


@pytest.mark.parametrize("task", QUIET_PERIODIC_TASKS)
def test_celery_says_nothing_about_a_periodic_sweep(caplog, task):
    caplog.set_level(logging.INFO)
    for name, message, args in _celery_lines(task):
        logging.getLogger(name).info(message, *args)
    assert caplog.records == []


def test_celery_still_logs_deliveries_and_warnings(caplog):
    caplog.set_level(logging.INFO)
    for name, message, args in _celery_lines("fulfillment.deliver_order"):
        logging.getLogger(name).info(message, *args)
    logging.getLogger("celery.app.trace").warning("Task %s raised", "fulfillment.reconcile_paid_orders")
    assert len(caplog.records) == 4


def test_the_lines_can_be_turned_back_on(caplog, settings):
    settings.CELERY_LOG_PERIODIC_TASKS = True
    quiet = QuietPeriodicTasks()
    name, message, args = _celery_lines(QUIET_PERIODIC_TASKS[0])[2]
    record = logging.getLogger(name).makeRecord(name, logging.INFO, __file__, 1, message, args, None)
    assert quiet.filter(record) is True
    settings.CELERY_LOG_PERIODIC_TASKS = False
    assert QuietPeriodicTasks().filter(record) is False
