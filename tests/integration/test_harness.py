"""The integration harness itself: a bug here reads as a bug in the engine."""

import threading

import pytest
import redis

from tests.integration.conftest import run_threads
from tests.integration.providers import FlakyProvider

pytestmark = pytest.mark.integration


def test_flaky_provider_threads_share_one_redis_client(monkeypatch):
    """Worker threads making their first call together must not each make a client: redis-py closes a
    discarded client's connections, which broke another thread's call before it was counted (the
    "121 == 122" of the outage test: one attempt more than counted provider calls)."""
    made = []
    meet = threading.Barrier(2, timeout=5)

    def from_url(url, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            meet.wait()  # passes only when a second thread also found no client and came to make one
        client = object()
        made.append(client)
        return client

    monkeypatch.setattr(redis.Redis, "from_url", staticmethod(from_url))
    provider = FlakyProvider(mode="fail")
    seen = run_threads([lambda: provider._redis for _ in range(8)], timeout=30)

    assert len(made) == 1
    assert all(client is made[0] for client in seen)
