"""Background ingestion as plain functions: queue a sync, process documents, write them.

The Celery tasks of :mod:`tribrid.ingestion.worker` are thin wrappers around these
functions, which take every collaborator explicitly and can be tested without Celery.

How a background run goes:

1. :func:`queue_sync` lists the source, decides per document with the same
   :func:`~tribrid.ingestion.pipeline.plan_document` rule as the foreground sync, marks
   the documents to (re-)index ``pending`` for the run in the ledger, hands their ids to
   ``enqueue`` in batches sized so the encoders get full batches across small files,
   and marks vanished documents deleted.
2. :func:`process_documents` re-reads each id's state, takes a **lease** on every pending
   document (a conditional ``UPDATE`` in the ledger, so two workers never process one
   document at once; a lease whose holder died is taken over), parses and chunks in
   this process, encodes the new chunks, and hands the encoded batch to a
   :class:`StoreSink`.
3. The sink commits the batch with :func:`apply_write`: points are upserted, then the
   ledger records the documents, then stale points are deleted, then the leases are
   released. Point ids are deterministic, so a batch committed twice (a crash, a
   redelivery) leaves exactly one copy of every point.

A file that kills its worker (a segfault, the OOM killer) leaves its parse attempt open
in the ledger (:meth:`~tribrid.ledger.SqlLedger.begin_attempt`); after ``max_attempts``
such deaths the file is quarantined as failed with kind ``crashed``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from sqlalchemy.exc import OperationalError as SqlOperationalError

from tribrid.connectors.base import Connector, ListingFailure, SourceDocument
from tribrid.encoders import EncoderSet, SparseVector
from tribrid.errors import ConfigError, EncoderError, LedgerError, SchemaMismatchError, StoreError
from tribrid.ingestion.base import DocumentFailure, FailureKind, ParsedDocument
from tribrid.ingestion.parse_pool import ParseJob, ParseOptions, parse_and_chunk
from tribrid.ingestion.pipeline import (
    DocumentRecord,
    PlanAction,
    WriteBatch,
    commit_batch,
    encode_batch,
    plan_document,
)
from tribrid.ledger.base import ChunkRecord, DocumentState, DocumentStatus, RunCounts, WorkItem
from tribrid.ledger.ledger import SqlLedger
from tribrid.store.base import Point, VectorStore

log = logging.getLogger(__name__)

# -- errors -------------------------------------------------------------------------------


def is_transient(error: BaseException) -> bool:
    """Whether retrying later may succeed: the store, the database or the broker was away.

    A schema mismatch is a store error that no retry fixes.
    """
    if isinstance(error, SchemaMismatchError):
        return False
    if isinstance(error, StoreError):
        return True
    if isinstance(error, LedgerError):
        cause = error.__cause__
        return isinstance(cause, SqlOperationalError) or "locked" in str(error)
    if isinstance(error, SqlOperationalError):
        return True
    try:
        from kombu.exceptions import OperationalError as BrokerError
    except ImportError:  # pragma: no cover - celery is a dependency
        return False
    return isinstance(error, BrokerError | ConnectionError | TimeoutError)


def failure_kind(error: BaseException) -> FailureKind:
    """The failure kind a document gets when its work failed with ``error`` for good."""
    if isinstance(error, EncoderError):
        return FailureKind.ENCODE_FAILED
    if is_transient(error) or isinstance(error, StoreError):
        return FailureKind.STORE_FAILED
    return FailureKind.CRASHED


# -- lease owners ---------------------------------------------------------------------------

_owner_lock = threading.Lock()
_owner: tuple[int, str] | None = None


def lease_owner() -> str:
    """This process's lease owner id: ``host:pid:token`` (a fresh token after a fork)."""
    global _owner
    with _owner_lock:
        if _owner is None or _owner[0] != os.getpid():
            token = secrets.token_hex(4)
            _owner = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{token}")
        return _owner[1]


def call_owner() -> str:
    """A lease owner id for one :func:`process_documents` call: ``host:pid:token:call``.

    Leases belong to a call, not to its process: the documents a call handed to the
    writer stay leased until the writer records them, and a second delivery of the same
    message to the same process must find them taken, not take them again.
    """
    return f"{lease_owner()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str) -> bool:
    """Whether a lease owner is a process of this host that no longer runs.

    Owners on other hosts, and unparseable ones, are presumed alive: their leases are
    taken over only when they expire.
    """
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        mine = lease_owner()  # this process's calls are alive; an older one with its pid is not
        return owner != mine and not owner.startswith(mine + ":")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


# -- batching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batching:
    """How many documents go into one ``process_documents`` task.

    A batch closes at ``max_documents`` or when the chunks estimated from the file
    sizes reach ``max_chunks`` (a few encoder batches), whichever comes first: small
    files share a task and fill the encoders' batches; a large file gets a task alone.
    """

    max_documents: int = 32
    max_chunks: int = 128
    bytes_per_chunk: int = 1000

    def __post_init__(self) -> None:
        if self.max_documents < 1 or self.max_chunks < 1 or self.bytes_per_chunk < 1:
            raise ConfigError(f"batching limits must be >= 1, got {self}")

    def estimate(self, size: int) -> int:
        """Chunks a file of ``size`` bytes is expected to give."""
        return max(1, size // self.bytes_per_chunk)


# -- where writes go ------------------------------------------------------------------------


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
    ledger: SqlLedger,
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


def _source_key_of(ledger: SqlLedger, document_ids: Mapping[str, int]) -> str | None:
    items = ledger.work_items(list(document_ids.values())[:1])
    return items[0].source_key if items else None


def remove_orphans(ledger: SqlLedger, store: VectorStore, source_id: int, source_key: str) -> int:
    """Delete the points of a source that the ledger does not list; returns how many.

    A cheap count comes first; ids are compared only when the counts differ.
    """
    if store.count() == ledger.count_chunks():
        return 0
    listed = set(ledger.all_point_ids(source_id))
    orphans = sorted(store.ids({"source_key": source_key}) - listed)
    if orphans:
        log.warning("removing %d points of %s the ledger does not list", len(orphans), source_key)
        store.delete(orphans)
    return len(orphans)


class DirectSink:
    """Writes to the store from this process: a Qdrant server, or the store's owner.

    Args:
        ledger: The ledger.
        store: Returns the open store (called on first use, so a store that is down
            fails the write, and is retried, rather than the worker's start).
    """

    def __init__(self, ledger: SqlLedger, store: Callable[[], VectorStore]) -> None:
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


def _ids_by_key(ledger: SqlLedger, batch: WriteBatch) -> dict[str, int]:
    ids: dict[str, int] = {}
    for record in batch.documents:
        state = ledger.get_document(batch.source_id, record.key)
        if state is not None:
            ids[record.key] = state.id
    return ids


# -- the JSON form of a write batch (what travels to the writer queue) ----------------------


def batch_to_json(batch: WriteBatch) -> dict[str, Any]:
    """A write batch as JSON-serialisable data (floats, ints, strings, lists, dicts)."""
    return {
        "source_id": batch.source_id,
        "reused": batch.reused,
        "points": [
            {
                "id": p.id,
                "dense": [float(v) for v in p.dense],
                "splade": [list(p.splade.indices), list(p.splade.values)],
                "bm25": [list(p.bm25.indices), list(p.bm25.values)],
                "payload": dict(p.payload),
            }
            for p in batch.points
        ],
        "payload_updates": [[pid, dict(payload)] for pid, payload in batch.payload_updates],
        "documents": [
            {
                "key": d.key,
                "size": d.size,
                "mtime_ns": d.mtime_ns,
                "content_hash": d.content_hash,
                "chunks": [[c.point_id, c.chunk_index, c.content_hash] for c in d.chunks],
            }
            for d in batch.documents
        ],
    }


def batch_from_json(data: Mapping[str, Any]) -> WriteBatch:
    """The inverse of :func:`batch_to_json`."""

    def sparse(pair: Sequence[Sequence[Any]]) -> SparseVector:
        return SparseVector(tuple(int(i) for i in pair[0]), tuple(float(v) for v in pair[1]))

    return WriteBatch(
        source_id=int(data["source_id"]),
        points=tuple(
            Point(
                id=p["id"],
                dense=p["dense"],
                splade=sparse(p["splade"]),
                bm25=sparse(p["bm25"]),
                payload=p["payload"],
            )
            for p in data["points"]
        ),
        payload_updates=tuple((pid, payload) for pid, payload in data["payload_updates"]),
        documents=tuple(
            DocumentRecord(
                key=d["key"],
                size=int(d["size"]),
                mtime_ns=int(d["mtime_ns"]),
                content_hash=d["content_hash"],
                chunks=tuple(ChunkRecord(pid, int(i), h) for pid, i, h in d["chunks"]),
            )
            for d in data["documents"]
        ),
        reused=int(data["reused"]),
    )


# -- queueing a sync ------------------------------------------------------------------------


def queue_sync(
    connector: Connector,
    *,
    ledger: SqlLedger,
    run_id: int,
    sink: StoreSink,
    enqueue: Callable[[list[int]], None],
    batching: Batching | None = None,
    max_file_bytes: int | None = None,
    retry_failed: bool = False,
) -> RunCounts:
    """List a source, queue what needs (re-)indexing, remove what vanished.

    Documents to parse become ``pending`` for ``run_id`` and their ids go to
    ``enqueue`` in batches (see :class:`Batching`). Unchanged documents cost nothing;
    files that fail before parsing (too large, unreadable, refused by the connector)
    are recorded at once. When the listing is done the run is marked listed, and
    completed if nothing was queued.

    Idempotent per run: a run that was listed already is not listed again.

    Returns:
        The counts of the listing (seen, unchanged, failed, deleted); the workers add
        indexed and failed documents to the run as they go.
    """
    progress = ledger.run_progress(run_id)
    if progress.listed or progress.finished:
        return RunCounts()  # a redelivered message: this run was listed already
    batching = batching or Batching()
    source_key = connector.source_key
    source_id = ledger.ensure_source(
        source_key, kind=source_key.split(":", 1)[0], location=source_key
    )
    known = {s.key: s for s in ledger.document_states(source_id)}
    counts = RunCounts()
    seen: set[str] = set()
    unlisted: list[str] = []
    batch: list[SourceDocument] = []
    estimated = 0

    def flush() -> None:
        nonlocal batch, estimated
        if batch:
            rows = [(d.key, d.key, d.size, d.mtime_ns) for d in batch]
            ids = ledger.queue_documents(source_id, run_id, rows)
            if ids:
                enqueue(ids)
        batch, estimated = [], 0

    for item in connector.list_documents():
        seen.add(item.key)
        counts += RunCounts(seen=1)
        if isinstance(item, ListingFailure):
            unlisted.append(item.key.rstrip("/") + "/")
            _record_failure(ledger, sink, source_id, item.key, None, item.kind, item.message)
            counts += RunCounts(failed=1)
            continue
        plan = plan_document(
            item, known.get(item.key), max_file_bytes=max_file_bytes, retry_failed=retry_failed
        )
        if plan.action == PlanAction.PARSE:
            batch.append(item)
            estimated += batching.estimate(item.size)
            if len(batch) >= batching.max_documents or estimated >= batching.max_chunks:
                flush()
        elif plan.action == PlanAction.FAIL:
            assert plan.kind is not None and plan.message is not None
            _record_failure(ledger, sink, source_id, item.key, item, plan.kind, plan.message)
            counts += RunCounts(failed=1)
        else:
            before = known[item.key]
            if plan.action == PlanAction.TOUCH:
                ledger.record_unchanged(before.id, mtime_ns=item.mtime_ns, size=item.size)
            counts += RunCounts(unchanged=1)
    flush()
    for key, before in known.items():
        if key in seen or before.status == DocumentStatus.DELETED:
            continue
        if any(key.startswith(prefix) for prefix in unlisted):
            continue  # its folder could not be listed this time: not evidence of deletion
        stale = ledger.mark_deleted(before.id)
        sink.delete(stale)
        counts += RunCounts(deleted=1, chunks_deleted=len(stale))
    ledger.add_run_counts(run_id, counts, listed=True)
    if ledger.complete_run_if_done(run_id):
        sink.run_completed(run_id, source_id, source_key)
    return counts


def _record_failure(
    ledger: SqlLedger,
    sink: StoreSink,
    source_id: int,
    key: str,
    doc: SourceDocument | None,
    kind: str,
    message: str,
    content_hash: str | None = None,
) -> None:
    stale = ledger.record_failed(
        source_id,
        key,
        path=key,
        size=doc.size if doc else 0,
        mtime_ns=doc.mtime_ns if doc else 0,
        content_hash=content_hash,
        kind=str(kind),
        message=message,
    )
    sink.delete(stale)


# -- processing documents -------------------------------------------------------------------


@dataclass
class ProcessReport:
    """What one :func:`process_documents` call did.

    Attributes:
        committed: Documents handed to the sink, parsed and encoded.
        failed: Documents recorded as failed (bad files, quarantined poison files).
        deleted: Documents whose file was gone.
        skipped: Documents no longer pending (another worker finished them).
        busy: Documents another live worker holds a lease on.
    """

    committed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)


class _ParseTimeout(BaseException):
    """Raised into a parse that overran; a BaseException, so parsers' ``except Exception``
    cannot mistake it for a broken file."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread only; elsewhere, no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise _ParseTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def document_path(item: WorkItem) -> Path:
    """Where a document's file is, from its source's location (``local:<root>``)."""
    kind, _, root = item.source_location.partition(":")
    if kind != "local" or not root:
        raise ConfigError(
            f"source {item.source_key!r} at {item.source_location!r} is not a local folder; "
            "background workers read local folders only"
        )
    return Path(root) / item.key


def process_documents(
    document_ids: Sequence[int],
    *,
    ledger: SqlLedger,
    encoders: EncoderSet,
    sink: StoreSink,
    options: ParseOptions,
    owner: str | None = None,
    lease_s: float = 900.0,
    max_attempts: int = 3,
    parse: Callable[[ParseJob, ParseOptions], ParsedDocument | DocumentFailure] = parse_and_chunk,
) -> ProcessReport:
    """Parse, encode and write the pending documents among ``document_ids``.

    Idempotent: documents that are no longer pending are skipped; documents another
    live worker holds are left to it (``busy``); a crash anywhere leaves documents
    pending and their points, if any were written, under the same ids a re-run writes.

    Args:
        document_ids: Ledger ids, as :func:`queue_sync` enqueued them.
        ledger: The ledger.
        encoders: The encoders (loaded once per process by the caller).
        sink: Where encoded batches go.
        options: How to parse and chunk.
        owner: Lease owner id (default: one for this call, see :func:`call_owner`).
        lease_s: How long a lease lasts; renewed after every parsed document.
        max_attempts: Workers a file may kill before it is quarantined as ``crashed``.
        parse: The parse function (tests inject failures through it).

    Raises:
        Exception: Errors of the ledger, the encoders or the store; every lease this
            call took and did not hand to the sink is released first, so a retry can
            take them again.
    """
    owner = owner or call_owner()
    report = ProcessReport()
    items = ledger.work_items(document_ids)
    report.skipped = [i.id for i in items if i.status != DocumentStatus.PENDING]
    pending = [i for i in items if i.status == DocumentStatus.PENDING]
    dead = {i.lease_owner for i in pending if i.lease_owner and owner_is_dead(i.lease_owner)}
    acquired = set(ledger.acquire_leases([i.id for i in pending], owner, lease_s, take_over=dead))
    report.busy = [i.id for i in pending if i.id not in acquired]
    mine = [i for i in pending if i.id in acquired]
    held = {i.id for i in mine}
    runs: dict[int, RunCounts] = {}
    try:
        by_source: dict[int, list[tuple[WorkItem, SourceDocument, str, ParsedDocument]]] = {}
        for item in mine:
            outcome = _parse_one(item, ledger, options, max_attempts, parse)
            if isinstance(outcome, tuple):
                by_source.setdefault(item.source_id, []).append((item, *outcome))
            elif outcome is None:
                stale = ledger.mark_deleted(item.id)
                sink.delete(stale)
                report.deleted.append(item.id)
                _count(runs, item, RunCounts(deleted=1, chunks_deleted=len(stale)))
            else:
                doc, digest, failure = outcome.doc, outcome.digest, outcome.failure
                _record_failure(
                    ledger,
                    sink,
                    item.source_id,
                    item.key,
                    doc,
                    failure.kind,
                    failure.message,
                    content_hash=digest,
                )
                report.failed.append(item.id)
                _count(runs, item, RunCounts(failed=1))
            ledger.renew_leases(sorted(held), owner, lease_s)
        finished = report.failed + report.deleted
        ledger.release_leases(finished, owner)
        held -= set(finished)
        for source_id, parsed in by_source.items():
            existing = {item.key: _state(item) for item, *_ in parsed}
            batch = encode_batch(
                ledger,
                encoders,
                source_id,
                [(doc, digest, result) for _, doc, digest, result in parsed],
                existing=existing,
            )
            run_ids = {item.run_id for item, *_ in parsed}
            run_id = run_ids.pop() if len(run_ids) == 1 else None
            sink.commit(batch, owner=owner, run_id=run_id)
            committed = [item.id for item, *_ in parsed]
            held -= set(committed)
            report.committed += committed
    finally:
        if held:
            ledger.release_leases(sorted(held), owner)
    for run_id, counts in runs.items():
        ledger.add_run_counts(run_id, counts)
        if ledger.complete_run_if_done(run_id):
            item = next(i for i in mine if i.run_id == run_id)
            sink.run_completed(run_id, item.source_id, item.source_key)
    return report


@dataclass(frozen=True)
class _Failed:
    doc: SourceDocument | None
    digest: str | None
    failure: DocumentFailure


def _parse_one(
    item: WorkItem,
    ledger: SqlLedger,
    options: ParseOptions,
    max_attempts: int,
    parse: Callable[[ParseJob, ParseOptions], ParsedDocument | DocumentFailure],
) -> tuple[SourceDocument, str, ParsedDocument] | _Failed | None:
    """Parse one leased document; ``None`` when its file is gone."""
    path = document_path(item)
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        failure = DocumentFailure(
            item.key,
            FailureKind.UNREADABLE,
            f"{item.key}: cannot read: {e.strerror or e}; check it exists and is readable",
        )
        return _Failed(None, None, failure)
    doc = SourceDocument(item.source_key, item.key, path, info.st_size, info.st_mtime_ns)
    if item.open_attempts >= max_attempts:
        failure = DocumentFailure(
            item.key,
            FailureKind.CRASHED,
            f"{item.key}: quarantined: a worker died while parsing it, "
            f"{item.open_attempts} time(s) (a crash, the memory limit or the OOM killer); "
            "fix, re-save or remove the file: a changed file is tried again",
        )
        return _Failed(doc, None, failure)
    try:
        digest = doc.content_hash
    except OSError as e:
        failure = DocumentFailure(
            item.key,
            FailureKind.UNREADABLE,
            f"{item.key}: cannot read: {e.strerror or e}; check it exists and is readable",
        )
        return _Failed(doc, None, failure)
    ledger.begin_attempt(item.id)
    job = ParseJob(source_key=item.source_key, document_key=item.key, path=path)
    try:
        with _time_limit(options.timeout_s):
            outcome = parse(job, options)
    except _ParseTimeout:
        outcome = DocumentFailure(
            item.key,
            FailureKind.TIMEOUT,
            f"{item.key}: parsing took longer than {options.timeout_s:.0f} s; raise "
            "TRIBRID_PARSING__TIMEOUT_S or remove the file from the folder",
        )
    ledger.end_attempt(item.id)
    if isinstance(outcome, DocumentFailure):
        return _Failed(doc, digest, outcome)
    return doc, digest, outcome


def _state(item: WorkItem) -> DocumentState:
    return DocumentState(
        id=item.id,
        key=item.key,
        size=item.size,
        mtime_ns=item.mtime_ns,
        content_hash=None,
        status=item.status,
        error_kind=None,
        chunk_count=0,
    )


def _count(runs: dict[int, RunCounts], item: WorkItem, counts: RunCounts) -> None:
    if item.run_id is not None:
        runs[item.run_id] = runs.get(item.run_id, RunCounts()) + counts


def fail_documents(
    document_ids: Sequence[int],
    *,
    ledger: SqlLedger,
    sink: StoreSink,
    kind: str,
    message: str,
) -> list[int]:
    """Record the still-pending documents among ``document_ids`` as failed.

    Used when a task gives up (its retries are exhausted): the documents end failed with
    the reason, and a kind in :data:`~tribrid.ingestion.pipeline.RETRYABLE_FAILURES`
    makes the next sync try them again even if their files did not change.

    Returns:
        The ids recorded as failed.
    """
    failed: list[int] = []
    runs: dict[int, RunCounts] = {}
    items = [i for i in ledger.work_items(document_ids) if i.status == DocumentStatus.PENDING]
    for item in items:
        stale = ledger.record_failed(
            item.source_id,
            item.key,
            path=item.key,
            size=item.size,
            mtime_ns=item.mtime_ns,
            content_hash=None,
            kind=str(kind),
            message=message,
        )
        with contextlib.suppress(Exception):  # the store may be what is down
            sink.delete(stale)
        failed.append(item.id)
        _count(runs, item, RunCounts(failed=1))
    for item in items:
        if item.lease_owner:
            ledger.release_leases([item.id], item.lease_owner)
    for run_id, counts in runs.items():
        ledger.add_run_counts(run_id, counts)
        if ledger.complete_run_if_done(run_id):
            item = next(i for i in items if i.run_id == run_id)
            with contextlib.suppress(Exception):
                sink.run_completed(run_id, item.source_id, item.source_key)
    return failed


__all__ = [
    "Batching",
    "DirectSink",
    "ProcessReport",
    "StoreSink",
    "apply_write",
    "batch_from_json",
    "batch_to_json",
    "call_owner",
    "document_path",
    "fail_documents",
    "failure_kind",
    "is_transient",
    "lease_owner",
    "owner_is_dead",
    "process_documents",
    "queue_sync",
    "remove_orphans",
]
