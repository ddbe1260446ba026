"""Sending a Celery task from a service, by the task's name.

Task modules are entry points: they import the services they run. A service that must have a task
sent (on commit, say) cannot import the task module back without a circle, so it names the task
and this module finds it in Celery's registry, where the task module put it when its app loaded
(each AppConfig.ready imports its tasks). The call is the task's own `delay`, so eager mode, routing
and a test's patch of `delay` all behave as with a direct call.
"""

from __future__ import annotations

from celery import current_app
from django.core.exceptions import ImproperlyConfigured


def task_delay(name: str, *args: object) -> None:
    """`task.delay(*args)` for the registered Celery task called `name`. Broker errors propagate:
    the caller decides what a message that could not be sent means."""
    try:
        task = current_app.tasks[name]
    except KeyError:
        raise ImproperlyConfigured(
            f"No Celery task is registered as {name!r}: the module that defines it was not loaded. "
            "Check that its app is in INSTALLED_APPS (its AppConfig.ready imports its tasks)."
        ) from None
    task.delay(*args)
