"""What ``tribrid serve`` holds open, and the queue its syncs run in.

The server opens the embedded store (as its owner), the ledger and the encoders once.
Every request thread reaches the store through :class:`LockedStore`, so the shard is
used by one thread at a time; query encoding runs outside that lock. Syncs asked for
over HTTP (or by a watched folder) wait in a :class:`SyncQueue` and run one at a time
on a thread of their own, with the same pipeline as ``tribrid ingest`` — or, when a
Celery broker is configured, are queued for the workers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from tribrid import factory, metrics
from tribrid.background.jobs import run_snapshots
from tribrid.encoders import EncoderSet
from tribrid.ledger import QueueLedger
from tribrid.server.metrics import ServerMetrics
from tribrid.settings import Settings
from tribrid.store.base import (
    Candidates,
    CollectionSchema,
    Hit,
    Point,
    StoreFilter,
    StoreQuery,
    VectorStore,
    search_candidates,
)

log = logging.getLogger(__name__)


class LockedStore:
    """A store whose every call holds one lock: request threads take turns on the shard.

    Args:
        store: The open store (the server's own embedded store).
    """

    single_writer: ClassVar[bool] = True

    def __init__(self, store: VectorStore) -> None:
        self._store = store
        self._lock = threading.RLock()

    @classmethod
    def open(cls, schema: CollectionSchema, **options: Any) -> LockedStore:
        raise TypeError("a LockedStore wraps a store that is already open")

    @property
    def schema(self) -> CollectionSchema:
        return self._store.schema

    def upsert(self, points: Sequence[Point]) -> None:
        with self._lock:
            self._store.upsert(points)

    def set_payload(self, point_id: str, payload: Mapping[str, Any]) -> None:
        with self._lock:
            self._store.set_payload(point_id, payload)

    def delete(self, point_ids: Sequence[str]) -> None:
        with self._lock:
            self._store.delete(point_ids)

    def delete_by_filter(self, filter: StoreFilter) -> None:
        with self._lock:
            self._store.delete_by_filter(filter)

    def query(self, query: StoreQuery) -> list[Hit]:
        with self._lock:
            return self._store.query(query)

    def query_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        with self._lock:
            return self._store.query_batch(queries)

    def retrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        with self._lock:
            return self._store.retrieve(point_ids)

    def candidates(self, queries: Sequence[StoreQuery]) -> list[Candidates]:
        with self._lock:
            return search_candidates(self._store, queries)

    async def acandidates(self, queries: Sequence[StoreQuery]) -> list[Candidates]:
        return await asyncio.to_thread(self.candidates, queries)

    def count(self, filter: StoreFilter | None = None) -> int:
        with self._lock:
            return self._store.count(filter)

    def ids(self, filter: StoreFilter | None = None) -> set[str]:
        with self._lock:
            return self._store.ids(filter)

    def flush(self) -> None:
        with self._lock:
            self._store.flush()

    def close(self) -> None:
        with self._lock:
            self._store.close()


@dataclass
class SyncJob:
    """One sync asked of the server.

    Attributes:
        id: The job's number (from 1, per server).
        path: The folder.
        retry_failed: Parse failed documents again even when unchanged.
        status: ``queued``, ``running``, ``done`` or ``failed``.
        run_id: The ledger run, once it has started (or was queued for workers).
        counts: What the sync did, when done in the server.
        error: Why it failed.
    """

    id: int
    path: str
    retry_failed: bool = False
    status: str = "queued"
    run_id: int | None = None
    counts: dict[str, int] | None = None
    error: str | None = None
    queued_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "retry_failed": self.retry_failed,
            "status": self.status,
            "run_id": self.run_id,
            "counts": self.counts,
            "error": self.error,
        }


class SyncQueue:
    """Syncs run one at a time on a thread of their own, in the order asked.

    Args:
        state: The server's state (store, ledger, encoders, settings).
        keep: How many finished jobs to remember for ``GET /v1/jobs/{id}``.
    """

    def __init__(self, state: ServerState, *, keep: int = 1000) -> None:
        self._state = state
        self._jobs: dict[int, SyncJob] = {}
        self._waiting: deque[SyncJob] = deque()
        self._finished: deque[int] = deque()
        self._keep = keep
        self._next = 1
        self._changed = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="tribrid-sync", daemon=True)
        self._thread.start()

    def submit(self, path: Path, *, retry_failed: bool = False) -> SyncJob:
        """Queue a sync of the folder ``path`` (already checked by the caller)."""
        with self._changed:
            job = SyncJob(self._next, str(path), retry_failed)
            self._next += 1
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._state.metrics.queue_depth.inc()
            self._changed.notify_all()
            return job

    def get(self, job_id: int) -> SyncJob | None:
        with self._changed:
            return self._jobs.get(job_id)

    def idle(self, job_id: int | None) -> bool:
        """Whether job ``job_id`` (or nothing, for ``None``) is still to finish."""
        job = self.get(job_id) if job_id is not None else None
        return job is None or job.status in ("done", "failed")

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the sync under way."""
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._waiting and not self._stop:
                    self._changed.wait()
                if self._stop:
                    return
                job = self._waiting.popleft()
                job.status = "running"
            try:
                self._sync(job)
                job.status = "done"
            except Exception as e:
                log.exception("sync job %d of %s failed", job.id, job.path)
                job.status, job.error = "failed", f"{type(e).__name__}: {e}"
            finally:
                self._state.metrics.queue_depth.dec()
                with self._changed:
                    self._finished.append(job.id)
                    while len(self._finished) > self._keep:
                        self._jobs.pop(self._finished.popleft(), None)

    def _sync(self, job: SyncJob) -> None:
        state = self._state
        settings = state.settings
        if settings.celery.broker_url is not None:
            from tribrid.background import worker

            job.run_id = worker.enqueue_sync(
                state.ledger, job.path, queue=settings.celery.queue, retry_failed=job.retry_failed
            )
            return
        pipeline = factory.sync_pipeline(
            settings,
            ledger=state.ledger,
            store=state.store,
            encoders=state.encoders,
            retry_failed=job.retry_failed,
        )
        report = pipeline.sync(factory.local_folder(settings, job.path))
        job.run_id = report.run_id
        job.counts = report.counts.as_dict()


class ServerState:
    """Everything one server holds open.

    Args:
        settings: The server's settings.
        allowed_roots: Folders (and what is below them) a sync request may name.
        encoders: The encoders to use instead of the settings' (tests give fakes).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        allowed_roots: Sequence[Path] = (),
        encoders: EncoderSet | None = None,
    ) -> None:
        self.settings = settings
        self.allowed_roots = tuple(Path(r).expanduser().resolve() for r in allowed_roots)
        self.metrics = ServerMetrics()
        self.encoders: EncoderSet = encoders or factory.build_encoders(settings)
        self.ledger: QueueLedger = factory.build_ledger(settings)
        try:
            opened = factory.build_store(settings, self.encoders, route=factory.StoreRoute.OWNER)
        except BaseException:
            self.ledger.close()
            raise
        self.store = LockedStore(opened)
        self.metrics.watch_runs(lambda: run_snapshots(self.ledger))
        # The sync stages of this process count into the server's metrics.
        metrics.attach(self.metrics.pipeline)
        if settings.celery.broker_url is not None:
            from tribrid.background import worker

            worker.configure(settings, create_folders=True)
        self.syncs = SyncQueue(self)
        self.started_at = time.time()

    def warm_up(self) -> None:
        """Load the models now, on a thread of their own: the first query is quick."""

        def load() -> None:
            try:
                self.encoders.warm_up()
            except Exception:  # raised again, with its message, by the first query
                log.exception("loading the models failed")

        threading.Thread(target=load, name="tribrid-serve-warm-up", daemon=True).start()

    def allowed(self, path: Path) -> bool:
        """Whether a sync request may name ``path`` (resolved, symlinks followed)."""
        return any(path == root or path.is_relative_to(root) for root in self.allowed_roots)

    def close(self) -> None:
        """Stop the sync queue, close the store and the ledger."""
        metrics.detach(self.metrics.pipeline)
        try:
            self.syncs.close()
        finally:
            try:
                self.store.close()
            finally:
                self.ledger.close()


__all__ = ["LockedStore", "ServerState", "SyncJob", "SyncQueue"]
