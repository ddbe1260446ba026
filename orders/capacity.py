"""What one web process gives to customers waiting on the bank, so the rest of the site keeps answering.

A checkout (`POST /api/orders`) waits inside the request for T-Bank's Init, up to
TBANK_TIMEOUT_SECONDS. Three limits keep such waits from stalling the site:

* In flight: at most CHECKOUT_MAX_IN_FLIGHT checkouts are admitted at once in a process (below
  its gunicorn thread count); one more is refused at once with 503 and Retry-After, before
  anything is written. The remaining threads are always free for the bank's notifications, the
  provider callbacks, the catalogue, the status pages and the admin, however many customers
  the bank keeps waiting.
* Working: of the admitted checkouts, at most CHECKOUT_MAX_WORKING run Python and database code
  at once; the others either wait on the bank (holding no working slot) or wait, asleep, for a
  slot. A process's threads share one interpreter lock: with every checkout runnable at once a
  notification would queue for the lock behind all of them after each of its queries; this way
  it competes with a few (gunicorn.conf.py also shortens the lock's switch interval).
* The database connection is handed back to the pool for the length of every bank call, so
  the connections a process needs follow the requests doing database work, not the customers
  waiting on the bank.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

# Seconds a refused checkout is asked to wait: slots free as soon as Inits are answered.
CHECKOUT_RETRY_AFTER_SECONDS = 2
# An admitted checkout that cannot start working within this long is refused like one over the limit.
WORKING_SLOT_WAIT_SECONDS = 10.0
_WARN_EVERY_SECONDS = 60.0


class CheckoutGate:
    """The checkouts in progress in this process, and those of them working; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work_free = threading.Condition(self._lock)
        self._local = threading.local()
        self.in_flight = 0
        self.working = 0
        self.refused = 0
        self._refused_since_warning = 0
        self._warned_at = 0.0

    @contextmanager
    def admit(self) -> Iterator[bool]:
        """Yields True with a slot (and a working slot) held for the block, or False: refuse the request."""
        limit = settings.CHECKOUT_MAX_IN_FLIGHT
        with self._lock:
            admitted = self.in_flight < limit
            if admitted:
                self.in_flight += 1
        if not admitted:
            self._refuse(f"{limit} checkouts already in flight in this process (CHECKOUT_MAX_IN_FLIGHT)")
            yield False
            return
        try:
            if not self._work_acquire(timeout=WORKING_SLOT_WAIT_SECONDS):
                self._refuse(f"no working slot within {WORKING_SLOT_WAIT_SECONDS:g} s (CHECKOUT_MAX_WORKING)")
                yield False
                return
            try:
                yield True
            finally:
                self._work_release()  # network_wait() gives back what it borrowed
        finally:
            with self._lock:
                self.in_flight -= 1

    @contextmanager
    def network_wait(self) -> Iterator[None]:
        """Around a bank call: its working slot and its database connection serve others meanwhile."""
        database_connection_release()
        held = getattr(self._local, "held", 0)
        for _ in range(held):
            self._work_release()
        try:
            yield
        finally:
            # The call is made: the rest of the checkout must run, so this waits as long as it takes.
            for _ in range(held):
                self._work_acquire(timeout=None)

    def _work_acquire(self, *, timeout: float | None) -> bool:
        with self._work_free:
            if not self._work_free.wait_for(lambda: self.working < settings.CHECKOUT_MAX_WORKING, timeout):
                return False
            self.working += 1
        self._local.held = getattr(self._local, "held", 0) + 1
        return True

    def _work_release(self) -> None:
        self._local.held -= 1
        with self._work_free:
            self.working -= 1
            self._work_free.notify()

    def _refuse(self, why: str) -> None:
        with self._lock:
            self.refused += 1
            self._refused_since_warning += 1
            now = time.monotonic()
            if now - self._warned_at < _WARN_EVERY_SECONDS:
                return
            count, self._warned_at, self._refused_since_warning = self._refused_since_warning, now, 0
        # One line a minute at most: a flood must not become a flood of log lines.
        logger.warning("Checkout refused (503): %s; %d refused in this process since the last such line", why, count)


CHECKOUT_GATE = CheckoutGate()


def bank_wait():
    """`with bank_wait(): client.init(...)`: the checkout's slot and connection are free meanwhile."""
    return CHECKOUT_GATE.network_wait()


def database_connection_release() -> None:
    """Hand this thread's pooled database connection back before a long network wait.

    Only with Django's PostgreSQL pool (DATABASE_POOL) and outside a transaction: the next
    query takes a connection from the pool again. Without a pool, closing would only trade the
    idle connection for a new one to open afterwards, so nothing is done.
    """
    if connection.in_atomic_block or connection.connection is None:
        return
    if connection.vendor != "postgresql" or not connection.settings_dict.get("OPTIONS", {}).get("pool"):
        return
    connection.close()
