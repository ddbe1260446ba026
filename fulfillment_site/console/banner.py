"""The provider-halt banner shown on every admin page: one small query, cached a few seconds per
process (CONSOLE_HALT_CACHE_SECONDS) and dropped whenever this process creates or lifts a halt."""

from __future__ import annotations

import threading
import time

from django.conf import settings

from fulfillment.models import ProviderHalt

_lock = threading.Lock()
_cache: dict = {"at": 0.0, "halts": None}


def active_halts() -> list[dict]:
    """[{"provider", "code", "reason", "created_at"}] of every active provider halt."""
    ttl = settings.CONSOLE_HALT_CACHE_SECONDS
    now = time.monotonic()
    with _lock:
        if _cache["halts"] is not None and now - _cache["at"] < ttl:
            return _cache["halts"]
    halts = list(ProviderHalt.objects.order_by("provider").values("provider", "code", "reason", "created_at"))
    with _lock:
        _cache.update(at=now, halts=halts)
    return halts


def forget_halts(**kwargs) -> None:
    with _lock:
        _cache["halts"] = None
