"""Sinks: where a background worker's encoded batches and point deletions go.

A worker that may open the store itself (a Qdrant server, or the process that owns the
embedded store) writes through :class:`DirectSink`; the others send their batches to
the store's single owner (:class:`QueueSink`, the writer queue). Either way the write is
:func:`apply_write`: :func:`~tribrid.ingestion.write.commit_batch`, then the leases are
released and the run's counts updated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from tribrid.ingestion.write import WriteBatch, batch_to_json, commit_batch, remove_orphans
from tribrid.ledger.base import QueueLedger, RunCounts
from tribrid.store.base import VectorStore

log = logging.getLogger(__name__)

#: Task names of the writer queue (the tasks live in :mod:`tribrid.background.worker`).
WRITE_BATCH = "tribrid.write_batch"
DELETE_POINTS = "tribrid.delete_points"
RECONCILE = "tribrid.reconcile"
WRITE_TASKS = (WRITE_BATCH, DELETE_POINTS, RECONCILE)


class StoreSink(Protocol):
    """Where encoded batches and point deletions go: the store itself, or its owner."""

    def commit(self, batch: WriteBatch, *, owner: str, run_id: int | None) -> object:
        """Write a batch (points, ledger, stale points) and release its leases."""
        ...

    def delete(self, point_ids: Sequence[str]) -> None:
        """Delete points the ledger no longer lists."""
        ...

    def run_completed(self, run_id: int, source_id: int, source_key: str) -> None:
        """A run is done: remove the points of its source the ledger does not list."""
        ...


def apply_write(
    ledger: QueueLedger,
    store: VectorStore,
    batch: WriteBatch,
    *,
    document_ids: Mapping[str, int],
    owner: str,
    run_id: int | None,
) -> RunCounts:
    """Commit an encoded batch and finish its documents (the writer's whole job).

    Upsert, record in the ledger, delete stale points (:func:`commit_batch`), then
    release the leases and add to the run's counts. When that completes the run, the
    store is reconciled with the ledger.
    """
    counts = commit_batch(ledger, store, batch)
    ledger.release_leases(list(document_ids.values()), owner)
    if run_id is not None:
        ledger.add_run_counts(run_id, counts)
        if ledger.complete_run_if_done(run_id):
            source_key = _source_key_of(ledger, document_ids)
            if source_key is not None:
                remove_orphans(ledger, store, batch.source_id, source_key)
            store.flush()  # durable, and the indexes and binary codes are built
    return counts


def _source_key_of(ledger: QueueLedger, document_ids: Mapping[str, int]) -> str | None:
    items = ledger.work_items(list(document_ids.values())[:1])
    return items[0].source_key if items else None


def adopt_leases(
    ledger: QueueLedger, batch: WriteBatch, *, sender: str, writer: str, lease_s: float
) -> list[int]:
    """The store's owner takes over the leases of a batch it received from ``sender``.

    Until the batch is written its documents stay leased; held by the sender's call, in
    an encode worker that lives on, a writer killed with the batch in hand would leave
    them held until the lease expires. Held by the writer, its death is a dead owner's,
    which a reaper sees at once. ``writer`` should be the writer process's own owner id
    (:func:`~tribrid.background.leases.lease_owner`), so a retry in the same process
    holds them already.

    Returns:
        The ids of the documents now leased by ``writer`` (those still pending).
    """
    ids = list(_ids_by_key(ledger, batch).values())
    return ledger.acquire_leases(ids, writer, lease_s, take_over={sender})


class DirectSink:
    """Writes to the store from this process: a Qdrant server, or the store's owner.

    Args:
        ledger: The ledger.
        store: Returns the open store (called on first use, so a store that is down
            fails the write, and is retried, rather than the worker's start).
    """

    def __init__(self, ledger: QueueLedger, store: Callable[[], VectorStore]) -> None:
        self._ledger = ledger
        self._store = store

    def commit(self, batch: WriteBatch, *, owner: str, run_id: int | None) -> RunCounts:
        ids = _ids_by_key(self._ledger, batch)
        return apply_write(
            self._ledger, self._store(), batch, document_ids=ids, owner=owner, run_id=run_id
        )

    def delete(self, point_ids: Sequence[str]) -> None:
        if point_ids:
            self._store().delete(point_ids)

    def run_completed(self, run_id: int, source_id: int, source_key: str) -> None:
        store = self._store()
        remove_orphans(self._ledger, store, source_id, source_key)
        store.flush()


def _ids_by_key(ledger: QueueLedger, batch: WriteBatch) -> dict[str, int]:
    ids: dict[str, int] = {}
    for record in batch.documents:
        state = ledger.get_document(batch.source_id, record.key)
        if state is not None:
            ids[record.key] = state.id
    return ids


class QueueSink:
    """Sends store writes to the writer queue (the embedded store's single owner).

    Args:
        app: The Celery app that sends the messages.
        queue: The writer queue.
    """

    def __init__(self, app: Any, queue: str) -> None:
        self._app = app
        self._queue = queue

    def commit(self, batch: WriteBatch, *, owner: str, run_id: int | None) -> None:
        self._app.send_task(
            WRITE_BATCH,
            args=[batch_to_json(batch)],
            kwargs={"owner": owner, "run_id": run_id},
            queue=self._queue,
        )

    def delete(self, point_ids: Sequence[str]) -> None:
        if point_ids:
            self._app.send_task(DELETE_POINTS, args=[list(point_ids)], queue=self._queue)

    def run_completed(self, run_id: int, source_id: int, source_key: str) -> None:
        self._app.send_task(RECONCILE, args=[run_id, source_id, source_key], queue=self._queue)


__all__ = ["DirectSink", "QueueSink", "StoreSink", "apply_write"]
