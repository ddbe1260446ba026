"""gunicorn settings of the web process: `gunicorn -c gunicorn.conf.py fulfillment_site.wsgi`.

Threaded workers (gthread): a request waiting on the network (T-Bank's Init inside
`POST /api/orders`, up to TBANK_TIMEOUT_SECONDS) holds a thread, not a process, so a few
processes keep dozens of slow Inits in flight while the rest of each process's threads answer
everything else. How many checkouts may wait on the bank at once per process is capped below
the thread count (CHECKOUT_MAX_IN_FLIGHT, see orders/api/capacity.py): the remaining threads are
always there for the bank's notifications, the catalogue, the status pages and the admin.
Why this model and the figures: docs/architecture.md#the-web-process, docs/benchmarks.md#flash-sale.

Every value comes from the environment; a command-line option (`-b`, `-w`, `--threads`) still
wins over this file.
"""

import os
import sys


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SystemExit(f"{name}={value!r} is not a whole number; unset it or give one (e.g. {default}).") from None
    if number < 1:
        raise SystemExit(f"{name}={value!r} must be at least 1 (e.g. {default}).")
    return number


# GUNICORN_BIND wins; else the PaaS convention ($PORT); else port 8000 on every interface.
bind = [os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"]

# Processes: one per core (at least two, so one restarting never leaves the site without a
# worker). Each is a Python interpreter with its own lock: more processes than cores only add
# memory and database connections.
workers = _int("WEB_CONCURRENCY", max(2, os.cpu_count() or 1))

# Threads per process: requests in progress at once, most of them waiting on the network.
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 32)

# The worker's main loop reports to the master every second whatever its threads do, so this
# is a hung-process detector, not a request deadline (Init has its own: TBANK_TIMEOUT_SECONDS).
timeout = _int("GUNICORN_TIMEOUT", 30)
# On a restart, in-flight checkouts get this long to finish their bank call.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
backlog = _int("GUNICORN_BACKLOG", 2048)

# The heartbeat file on tmpfs: on a disk-backed /tmp (containers) a slow fsync can make the
# master think a worker hung. (gunicorn makes a uniquely named file there, S108 does not apply.)
SHM = "/dev/shm"  # noqa: S108
if os.path.isdir(SHM):
    worker_tmp_dir = SHM


def on_starting(server) -> None:
    # The workers' Django settings size the checkout gate from the thread count actually used
    # (a `--threads` on the command line included): publish it before they are forked.
    os.environ["GUNICORN_THREADS"] = str(server.cfg.threads)


def post_worker_init(worker) -> None:
    # A thread back from the database waits this long for the interpreter lock before it asks
    # the running thread to give it up (Python's default is 5 ms). The webhook makes a few dozen
    # queries: with checkouts busy in the same process, every one of them paid up to 5 ms.
    sys.setswitchinterval(_int("WEB_SWITCH_INTERVAL_US", 1000) / 1_000_000)
