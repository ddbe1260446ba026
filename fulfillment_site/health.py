"""Health checks for load balancers, orchestrators and monitoring.

- `GET /healthz`: the process is alive and answering. Touches nothing else: a database outage
  must not make a supervisor restart every web process.
- `GET /readyz`: this process can do its work: the database answers a query, the Celery broker
  accepts a connection, and every migration in the code is applied. 200 when all three pass,
  503 otherwise; the JSON names each check's state and a short reason, never a URL, host name
  or password.

Both are answered by a middleware placed first, before the HTTPS redirect, the host check,
sessions and throttling: a load balancer probes a backend by its address over plain HTTP.
Nothing is cached: every probe checks again, each check bounded in time (the broker's connect
timeout is HEALTH_CHECK_TIMEOUT_SECONDS; the database's is its pool or connect timeout).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.http import HttpResponse

from fulfillment_site.celery import app

logger = logging.getLogger(__name__)

HEALTH_PATHS = {"/healthz": "health", "/healthz/": "health", "/readyz": "ready", "/readyz/": "ready"}
#: Pending migrations named in the answer, at most.
MIGRATIONS_NAMED = 5


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def database_check(alias: str = DEFAULT_DB_ALIAS) -> Check:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the class name says which
        return Check("database", False, f"the query failed ({type(exc).__name__})")
    return Check("database", True, "answered a query")


@cache
def _migrations_in_code() -> dict[tuple[str, str], tuple[tuple[str, str], ...]]:
    """The migration graph of the code: (app, name) -> the migrations it replaces (a squash).
    The files of a running process do not change, so they are read once; what is applied is
    asked on every probe."""
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    return {key: tuple(tuple(r) for r in (graph.nodes[key].replaces or ())) for key in graph.nodes}


def migrations_check(alias: str = DEFAULT_DB_ALIAS) -> Check:
    try:
        applied = set(MigrationRecorder(connections[alias]).applied_migrations())
    except Exception as exc:  # noqa: BLE001
        return Check("migrations", False, f"could not read the applied migrations ({type(exc).__name__})")
    # A squash is applied when it, or everything it replaces, is recorded (what `migrate` does).
    pending = sorted(
        key
        for key, replaces in _migrations_in_code().items()
        if key not in applied and not (replaces and all(r in applied for r in replaces))
    )
    if pending:
        named = ", ".join(f"{app}.{name}" for app, name in pending[:MIGRATIONS_NAMED])
        more = f" and {len(pending) - MIGRATIONS_NAMED} more" if len(pending) > MIGRATIONS_NAMED else ""
        return Check("migrations", False, f"{len(pending)} not applied: {named}{more}; run manage.py migrate")
    return Check("migrations", True, "all applied")


def broker_check() -> Check:
    url = str(app.conf.broker_url or "")
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    if url.startswith("filesystem://"):
        # The embedded development broker: messages are files in these folders.
        options = app.conf.broker_transport_options or {}
        folders = {options.get("data_folder_in"), options.get("data_folder_out")} - {None}
        missing = [folder for folder in folders if not os.access(folder, os.W_OK | os.X_OK)]
        if not folders or missing:
            return Check("broker", False, "the filesystem broker's folder is missing or not writable")
        return Check("broker", True, "filesystem broker folders writable")
    transport_options = dict(app.conf.broker_transport_options or {})
    if url.startswith(("redis://", "rediss://")):
        transport_options.update(socket_connect_timeout=timeout, socket_timeout=timeout)
    connection = None
    try:
        # A transport that cannot even load (a missing package) fails here: still a 503, not a 500.
        connection = app.connection_for_write(connect_timeout=timeout, transport_options=transport_options)
        # One attempt, no retry loop: a load balancer asks again in a few seconds anyway.
        connection.ensure_connection(max_retries=0, timeout=timeout)
        connection.default_channel  # noqa: B018 - Redis only talks to the server when a channel opens
    except Exception as exc:  # noqa: BLE001
        return Check("broker", False, f"no connection ({type(exc).__name__})")
    finally:
        if connection is not None:
            connection.release()
    return Check("broker", True, "accepted a connection")


def readiness() -> list[Check]:
    database = database_check()
    if database.ok:
        migrations = migrations_check()
    else:
        migrations = Check("migrations", False, "not checked: the database is unavailable")
    return [database, broker_check(), migrations]


def _json(status: int, body: dict) -> HttpResponse:
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    # Whatever caches sit in between: every probe must reach the process.
    response["Cache-Control"] = "no-store"
    return response


def health_response(kind: str, method: str) -> HttpResponse:
    if method not in ("GET", "HEAD"):
        response = _json(405, {"detail": f"Method {method} not allowed; use GET."})
        response["Allow"] = "GET, HEAD"
        return response
    if kind == "health":
        return _json(200, {"status": "ok"})
    checks = readiness()
    ready = all(check.ok for check in checks)
    _log_change(ready, checks)
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in checks},
    }
    response = _json(200 if ready else 503, body)
    # Probes come every few seconds: Django's error line for every 503 would bury the log. The
    # change of state is logged once instead (above).
    response._has_been_logged = True
    return response


_last_ready: bool | None = None


def _log_change(ready: bool, checks: list[Check]) -> None:
    global _last_ready
    if ready == _last_ready:
        return
    _last_ready = ready
    if ready:
        logger.info("Ready: database, broker and migrations pass")
    else:
        failed = "; ".join(f"{check.name}: {check.detail}" for check in checks if not check.ok)
        logger.warning("Not ready (/readyz answers 503): %s", failed)


class HealthCheckMiddleware:
    """Answers /healthz and /readyz itself; every other request goes on down the stack."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        kind = HEALTH_PATHS.get(request.path_info)
        if kind is None:
            return self.get_response(request)
        return health_response(kind, request.method)
