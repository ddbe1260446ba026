"""Who is doing a piece of work: the name a process writes into the claims it takes."""

import os
import socket
import threading

_HOST = socket.gethostname()


def worker_id() -> str:
    """Host, process and thread of the caller: shown to staff beside a claim, so they can tell
    which worker holds it (claims are compared by their random token, never by this name)."""
    return f"{_HOST}:{os.getpid()}:{threading.get_ident()}"[:120]
