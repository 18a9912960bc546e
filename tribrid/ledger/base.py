"""Records and protocol of the ledger, the source of truth of what is indexed.

The ledger knows every document of every source, its state, and the point ids of its
chunks. The vector store is derived from it: whatever the store holds can be checked
against, or rebuilt from, the ledger.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable


class DocumentStatus(StrEnum):
    """Lifecycle of a document row in the ledger."""

    PENDING = "pending"
    INDEXED = "indexed"
    FAILED = "failed"
    DELETED = "deleted"


class RunStatus(StrEnum):
    """Lifecycle of a sync run."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class DocumentState:
    """What the ledger knows about one document, enough to decide whether to re-index it.

    Attributes:
        id: Row id of the document in the ledger.
        key: Key of the document within its source (its relative path).
        size: Size in bytes when last seen.
        mtime_ns: Modification time in nanoseconds when last seen.
        content_hash: SHA-256 of the document's content when last read (for a file, of
            its bytes); ``None`` when it was never read or the document is deleted.
        status: Where the document is in its lifecycle.
        error_kind: Why the last attempt failed (a :class:`~tribrid.ingestion.base.FailureKind`
            value), or ``None``.
        chunk_count: Number of chunks (points) the ledger holds for the document.
        generation: The index generation its points are in (see
            :mod:`tribrid.store.generations`).
    """

    id: int
    key: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: DocumentStatus
    error_kind: str | None
    chunk_count: int
    generation: int = 0


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk of a document as the ledger records it: the point it became.

    Attributes:
        point_id: Deterministic id of the point in the store.
        chunk_index: Position of the chunk within its document, from 0.
        content_hash: SHA-256 of the chunk's text.
    """

    point_id: str
    chunk_index: int
    content_hash: str

    def __post_init__(self) -> None:
        if not self.point_id:
            raise ValueError("ChunkRecord.point_id must not be empty")
        if self.chunk_index < 0:
            raise ValueError(
                f"ChunkRecord.chunk_index must be >= 0, got {self.chunk_index} for {self.point_id}"
            )
        if not self.content_hash:
            raise ValueError(f"ChunkRecord.content_hash must not be empty for {self.point_id}")


@dataclass(frozen=True)
class IndexedDocument:
    """A document whose points are in the store, to record as indexed.

    Attributes:
        key: Key of the document within its source.
        path: Where it was read.
        size: Size in bytes when read.
        mtime_ns: Modification time when read.
        content_hash: SHA-256 of its content.
        chunks: Exactly the chunks (points) it has now.
    """

    key: str
    path: str
    size: int
    mtime_ns: int
    content_hash: str
    chunks: Sequence[ChunkRecord]


@dataclass(frozen=True)
class RunCounts:
    """What a sync run did, document by document and chunk by chunk.

    Counts add up: ``total = a + b`` (or ``a.add(b)``) returns a new record, so stages
    can report partial counts and the run sums them.

    Attributes:
        seen: Documents listed by the connector.
        indexed: Documents (re-)indexed.
        unchanged: Documents skipped because their content did not change.
        failed: Documents that could not be indexed.
        deleted: Documents gone from the source and removed from the index.
        chunks_embedded: Chunks encoded and written to the store.
        chunks_reused: Chunks whose point was kept because their text did not change.
        chunks_deleted: Stale points removed from the store.
    """

    seen: int = 0
    indexed: int = 0
    unchanged: int = 0
    failed: int = 0
    deleted: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_deleted: int = 0

    def __post_init__(self) -> None:
        for name, value in self.as_dict().items():
            if value < 0:
                raise ValueError(f"RunCounts.{name} must be >= 0, got {value}")

    def as_dict(self) -> dict[str, int]:
        """The counts by name, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def add(self, other: RunCounts) -> RunCounts:
        """Return the sum of these counts and ``other``."""
        mine, theirs = self.as_dict(), other.as_dict()
        return RunCounts(**{name: mine[name] + theirs[name] for name in mine})

    def __add__(self, other: object) -> RunCounts:
        if not isinstance(other, RunCounts):
            return NotImplemented
        return self.add(other)


@dataclass(frozen=True)
class RunRecord:
    """One sync run of one source.

    Attributes:
        id: Row id of the run.
        source_key: Key of the source that was synced.
        started_at: When the run started (UTC).
        finished_at: When it finished (UTC), ``None`` while running or if it never finished.
        status: ``running``, ``completed`` or ``failed``.
        counts: What the run did.
        duration_s: Wall-clock duration in seconds, once finished.
        error: Why the run failed, if it did.
    """

    id: int
    source_key: str
    started_at: datetime
    finished_at: datetime | None
    status: RunStatus
    counts: RunCounts
    duration_s: float | None
    error: str | None


@dataclass(frozen=True)
class SourceRecord:
    """A source the ledger knows, with its latest run (for periodic resyncs).

    Attributes:
        id: Row id of the source.
        key: Key of the source, e.g. ``local:/srv/docs``.
        kind: Kind of source, e.g. ``local``.
        location: Where the source is (for a local folder, ``local:<root>``).
        last_run: The most recently started run of the source, if any.
        name: The name it was given (``--source NAME``), if any.
        documents: Its documents that are not deleted.
        chunks: Its chunks (points).
    """

    id: int
    key: str
    kind: str
    location: str
    last_run: RunRecord | None = None
    name: str | None = None
    documents: int = 0
    chunks: int = 0

    @property
    def label(self) -> str:
        """What to call the source: its name, or its key when it has none."""
        return self.name or self.key


@dataclass(frozen=True)
class FailureRecord:
    """A document that could not be indexed, with the reason a person can act on.

    Attributes:
        source_key: Key of the document's source.
        key: Key of the document within its source.
        path: Path of the document when it failed.
        error_kind: Short machine-readable reason (a ``FailureKind`` value).
        error_message: What went wrong and what to do about it.
        updated_at: When the failure was recorded (UTC).
    """

    source_key: str
    key: str
    path: str
    error_kind: str | None
    error_message: str | None
    updated_at: datetime


@dataclass(frozen=True)
class MemberStatus:
    """One document inside an archive, as ``tribrid status`` lists it under the archive.

    Attributes:
        key: The member's path inside the archive (``dir/b.zip!/c.md`` when nested).
        status: Its status.
        error_kind: Why it failed, if it did.
    """

    key: str
    status: str
    error_kind: str | None = None


@dataclass(frozen=True)
class ArchiveStatus:
    """An archive and its members (``a.zip!/…`` documents).

    Attributes:
        source_key: Key of the archive's source.
        key: The archive's key.
        status: ``indexed`` when any member is, ``failed`` when the archive itself failed
            or every member did, ``pending`` otherwise.
        members: Its members, by key (capped; ``member_count`` has the total).
        member_count: How many members it has.
        error_kind: Why the archive itself failed, if it did.
    """

    source_key: str
    key: str
    status: str
    members: list[MemberStatus] = field(default_factory=list)
    member_count: int = 0
    error_kind: str | None = None


@dataclass(frozen=True)
class StatusReport:
    """A summary of the ledger, for ``tribrid status``.

    Attributes:
        counts: Number of documents by status; every :class:`DocumentStatus` is present.
        chunks: Number of chunks (points) recorded.
        failures: The most recent failed documents, newest first (capped; the total
            is ``counts["failed"]``).
        last_run: The most recently started run, if any.
        sources: Keys of the sources covered by the report, sorted.
        archives: Archives with their members listed under them, by key (capped).
    """

    counts: dict[str, int]
    chunks: int
    failures: list[FailureRecord] = field(default_factory=list)
    last_run: RunRecord | None = None
    sources: list[str] = field(default_factory=list)
    archives: list[ArchiveStatus] = field(default_factory=list)


@dataclass(frozen=True)
class WorkItem:
    """A document as a background task sees it when it re-reads the ledger.

    Attributes:
        id: Row id of the document.
        source_id: Row id of its source.
        source_key: Key of its source.
        source_location: Where the source is (for a local folder, ``local:<root>``).
        key: Key of the document within its source.
        path: Path of the document when it was last recorded.
        status: Where the document is in its lifecycle; only ``pending`` is work to do.
        size: Size in bytes when last recorded.
        mtime_ns: Modification time when last recorded.
        run_id: The run that last queued the document.
        lease_owner: Who holds the document right now, if anyone.
        lease_expires_at: Until when (UTC).
        open_attempts: Parse attempts begun and not ended: besides one that may be
            running now, each is a worker that died while parsing this file.
    """

    id: int
    source_id: int
    source_key: str
    source_location: str
    key: str
    path: str
    status: DocumentStatus
    size: int
    mtime_ns: int
    run_id: int | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    open_attempts: int


@dataclass(frozen=True)
class RunProgress:
    """Live progress of one run, from the ledger (``tribrid status --run``).

    Attributes:
        run: The run and the counts its tasks have added so far.
        queued: Documents of the run waiting for a worker.
        in_progress: Documents of the run a worker holds a lease on.
        indexed: Documents of the run indexed.
        failed: Documents of the run that failed while processed.
        deleted: Documents of the run found gone when a worker got to them.
        listed: Whether the listing is done and every document queued.
        lease_owners: Who holds the run's pending documents (``host:pid:...`` ids).
        last_activity: When the run or one of its documents last changed (UTC).
    """

    run: RunRecord
    queued: int
    in_progress: int
    indexed: int
    failed: int
    deleted: int
    listed: bool
    lease_owners: tuple[str, ...] = ()
    last_activity: datetime | None = None

    @property
    def done(self) -> int:
        """Documents of the run that reached an outcome."""
        return self.indexed + self.failed + self.deleted

    @property
    def remaining(self) -> int:
        """Documents of the run still to do."""
        return self.queued + self.in_progress

    @property
    def finished(self) -> bool:
        """Whether the run is over (completed or failed)."""
        return self.run.status != RunStatus.RUNNING

    def rate(self, now: datetime) -> float:
        """Documents per second since the run started."""
        end = self.run.finished_at or now
        elapsed = (end - self.run.started_at).total_seconds()
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_s(self, now: datetime) -> float | None:
        """Seconds until every queued document is done at the current rate, if known."""
        if self.finished:
            return 0.0
        rate = self.rate(now)
        if not self.listed or rate <= 0:
            return None
        return self.remaining / rate


@runtime_checkable
class Ledger(Protocol):
    """Sync bookkeeping: what every sync needs from a ledger backend.

    Sources, runs, the state of every document and the point ids of its chunks. The
    foreground sync (:mod:`tribrid.ingestion.pipeline`) needs nothing more.

    Write-ahead rule: the caller upserts new points to the store first, then records
    them here, then deletes the stale point ids the ledger returns. See
    :mod:`tribrid.ledger.bookkeeping` for why that order is safe.
    """

    def close(self) -> None:
        """Release the database connections."""
        ...

    def ensure_source(self, key: str, *, kind: str, location: str) -> int:
        """Create the source row if needed and return its id (idempotent)."""
        ...

    def start_run(self, source_id: int) -> int:
        """Record the start of a sync run and return its id."""
        ...

    def hold_source(self, source_id: int) -> AbstractContextManager[bool]:
        """While the block runs, claim the right to list and sync the source.

        Yields whether this process got it; it never waits. Other processes and hosts
        using the same ledger see the claim; it goes with a killed holder.
        """
        ...

    def hold_run(self, run_id: int) -> AbstractContextManager[bool]:
        """While the block runs, claim the right to list the run (copies of one message)."""
        ...

    def busy_runs(self, source_id: int, *, quiet_s: float = 900.0) -> list[RunRecord]:
        """Background runs of the source still at work on queued documents.

        At work: a live lease on one of its documents, or a document of it changed in
        the last ``quiet_s`` seconds. A run quiet for longer lost its workers, and does
        not stop a new sync.
        """
        ...

    def finish_run(
        self,
        run_id: int,
        counts: RunCounts,
        *,
        status: str = "completed",
        error: str | None = None,
    ) -> None:
        """Record the end of a sync run with its counts."""
        ...

    def document_states(self, source_id: int) -> Iterator[DocumentState]:
        """Stream the state of every document of a source, deleted ones included."""
        ...

    def get_document(self, source_id: int, key: str) -> DocumentState | None:
        """The state of one document, or ``None`` if the ledger never saw it."""
        ...

    def chunks_of(self, document_id: int) -> list[ChunkRecord]:
        """The chunks recorded for a document, ordered by ``chunk_index``."""
        ...

    def chunks_of_many(self, document_ids: Sequence[int]) -> dict[int, list[ChunkRecord]]:
        """The chunks of several documents at once, each list ordered by ``chunk_index``."""
        ...

    def record_indexed(
        self,
        source_id: int,
        key: str,
        *,
        path: str,
        size: int,
        mtime_ns: int,
        content_hash: str,
        chunks: Sequence[ChunkRecord],
        generation: int | None = None,
    ) -> list[str]:
        """Record a document as indexed with exactly ``chunks``; return the stale point ids.

        ``generation`` is the index generation the points were written to (None: the
        one the document's row already names)."""
        ...

    def record_indexed_many(
        self,
        source_id: int,
        documents: Sequence[IndexedDocument],
        *,
        generation: int | None = None,
    ) -> list[list[str]]:
        """:meth:`record_indexed` for several documents in one transaction; the stale
        point ids of each, in the order of ``documents``."""
        ...

    def record_failed(
        self,
        source_id: int,
        key: str,
        *,
        path: str,
        size: int,
        mtime_ns: int,
        content_hash: str | None,
        kind: str,
        message: str,
    ) -> list[str]:
        """Record a document as failed; return the point ids it no longer owns."""
        ...

    def record_unchanged(self, document_id: int, *, mtime_ns: int, size: int) -> None:
        """Record a new mtime/size for a document whose content did not change."""
        ...

    def mark_deleted(self, document_id: int) -> list[str]:
        """Record a document as gone from its source; return its point ids."""
        ...

    def all_point_ids(self, source_id: int | None = None) -> Iterator[str]:
        """Stream every point id recorded, for one source or all."""
        ...

    def count_chunks(self, source_id: int | None = None) -> int:
        """Number of chunks recorded, for one source or all."""
        ...

    def status(
        self, source_key: str | None = None, *, max_failures: int | None = 100
    ) -> StatusReport:
        """Summarise the ledger, for one source or all."""
        ...

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The most recent runs, newest first."""
        ...

    def sources(self) -> list[SourceRecord]:
        """Every source, by key, each with its most recently started run."""
        ...

    def find_source(self, name_or_key: str) -> SourceRecord | None:
        """The source with this name, or else this key; None if there is none."""
        ...

    def name_source(self, source_id: int, name: str | None) -> None:
        """Give a source a name (None: take it away); names are unique."""
        ...

    def remove_source(self, source_id: int) -> list[str]:
        """Forget a source, its documents, chunks and runs; return its point ids."""
        ...

    def source_chunking(self, source_id: int) -> str | None:
        """The chunking record of the source's last complete sync; None before one."""
        ...

    def record_chunking(self, source_id: int, chunking: str) -> None:
        """Record the chunking (an opaque string) the source's documents are cut with."""
        ...


@runtime_checkable
class RunQueue(Protocol):
    """The queue of background runs: pending documents, leases on them, and progress.

    A run queues its documents with :meth:`queue_documents`; workers re-read them with
    :meth:`work_items`, claim them with :meth:`acquire_leases`, add what they did with
    :meth:`add_run_counts` and call :meth:`complete_run_if_done` after every batch.
    """

    def queue_documents(
        self, source_id: int, run_id: int, documents: Sequence[tuple[str, str, int, int]]
    ) -> list[int]:
        """Mark ``(key, path, size, mtime_ns)`` documents pending for a run; return their ids."""
        ...

    def work_items(self, document_ids: Sequence[int]) -> list[WorkItem]:
        """The current state of documents, in the order given (unknown ids left out)."""
        ...

    def leased_pending(self) -> list[WorkItem]:
        """Pending documents of running runs that a worker holds a lease on."""
        ...

    def claim_stranded(self, quiet_s: float) -> list[int]:
        """Queued documents of runs quiet for ``quiet_s`` s that nobody holds: lost messages."""
        ...

    def acquire_leases(
        self,
        document_ids: Sequence[int],
        owner: str,
        ttl_s: float,
        *,
        take_over: Collection[str] = (),
    ) -> list[int]:
        """Claim pending documents for ``owner`` until ``ttl_s`` from now; return those claimed."""
        ...

    def renew_leases(self, document_ids: Sequence[int], owner: str, ttl_s: float) -> int:
        """Extend ``owner``'s leases; return how many it still holds."""
        ...

    def release_leases(self, document_ids: Sequence[int], owner: str) -> None:
        """Give up ``owner``'s leases on these documents."""
        ...

    def begin_attempt(self, document_id: int) -> int:
        """Record that a parse of the document begins; return the unfinished attempts."""
        ...

    def end_attempt(self, document_id: int) -> None:
        """Record that the parse of the document finished, whatever its outcome."""
        ...

    def add_run_counts(self, run_id: int, counts: RunCounts, *, listed: bool = False) -> None:
        """Add to a run's counts; ``listed`` records that its listing is done."""
        ...

    def complete_run_if_done(self, run_id: int) -> bool:
        """Complete a run whose listing is done and has nothing pending; return whether this did."""
        ...

    def fail_run(self, run_id: int, error: str) -> None:
        """Record that a background run stopped; its counts are kept."""
        ...

    def run_progress(self, run_id: int) -> RunProgress:
        """Where a run stands: queued, in progress, indexed, failed."""
        ...


@runtime_checkable
class QueueLedger(Ledger, RunQueue, Protocol):
    """A ledger with a background run queue: the protocol for background ingestion.

    Background runs (the Celery tasks, the periodic resync, following a run's progress)
    need both the sync bookkeeping of :class:`Ledger` and the queue of :class:`RunQueue`.
    """
