"""Deleting many rows without holding locks: a queryset removed in short batches, with progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet

#: Called with the number of rows deleted so far.
Progress = Callable[[int], None]


@dataclass(frozen=True)
class PurgeResult:
    """What a purge of one table did (or, in a dry run, would do)."""

    deleted: int  # rows deleted (dry run: rows that would be)
    kept: int  # rows older than the cutoff that are kept


def purge_in_batches(
    purgeable: QuerySet, *, older: QuerySet, dry_run: bool, batch_size: int, progress: Progress | None
) -> PurgeResult:
    """Delete `purgeable` in batches of `batch_size` (each its own short transaction, so a long
    purge never holds locks the webhook or the workers wait on); `older` is every row older than
    the cutoff, to report what is kept."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    if dry_run:
        deleted = purgeable.count()
        return PurgeResult(deleted=deleted, kept=older.count() - deleted)
    deleted = 0
    while True:
        ids = list(purgeable.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            # The conditions are applied again: a row that stopped being purgeable meanwhile stays.
            count, _ = purgeable.filter(pk__in=ids).delete()
        deleted += count
        if progress:
            progress(deleted)
    return PurgeResult(deleted=deleted, kept=older.count())
