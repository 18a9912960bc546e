"""The sync of one source: list, diff against the ledger, parse, encode, write.

Order of writes, for every batch of documents:

1. new points are upserted to the store;
2. the ledger records the documents and their chunks, and hands back the point ids
   that are no longer part of them;
3. those stale points are deleted from the store.

A crash between two steps leaves at worst orphan points that the next sync overwrites
(ids are deterministic) or stale points that the ledger still lists and deletes later.
Nothing is ever half-visible and nothing is duplicated.

Each stage is a plain function or class that takes its collaborators explicitly, so a
Celery task can run any one of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from tribrid.connectors.base import Connector, ListingFailure, SourceDocument, TextDocument
from tribrid.encoders import EncoderSet
from tribrid.ingestion.base import (
    Chunk,
    DocumentFailure,
    FailureKind,
    ParsedDocument,
)
from tribrid.ingestion.parse_pool import ParseJob
from tribrid.ledger.base import (
    ChunkRecord,
    DocumentState,
    DocumentStatus,
    Ledger,
    RunCounts,
    RunStatus,
)
from tribrid.store.base import Point, VectorStore

log = logging.getLogger(__name__)

ParseOutcome = ParsedDocument | DocumentFailure


class DocumentParser(Protocol):
    """Turns parse jobs into parsed documents or failures, in any order."""

    def imap(self, jobs: Iterable[ParseJob]) -> Iterator[tuple[ParseJob, ParseOutcome]]:
        """Parse every job; yield each with its outcome as it completes."""
        ...


ParserFactory = Callable[[], AbstractContextManager[DocumentParser]]


class ProgressListener(Protocol):
    """Receives progress as a sync runs (the CLI draws it)."""

    def document_done(self, key: str, outcome: str, chunks: int) -> None:
        """A document ended as ``indexed``, ``unchanged``, ``failed`` or ``deleted``."""
        ...

    def chunks_embedded(self, count: int) -> None:
        """``count`` more chunks were encoded and written."""
        ...


class _Silent:
    def document_done(self, key: str, outcome: str, chunks: int) -> None:
        pass

    def chunks_embedded(self, count: int) -> None:
        pass


@dataclass(frozen=True)
class SyncFailure:
    """A document that failed in this run, with its reason."""

    key: str
    kind: str
    message: str


@dataclass(frozen=True)
class SyncReport:
    """What one sync did."""

    run_id: int
    source_key: str
    counts: RunCounts
    duration_s: float
    failures: tuple[SyncFailure, ...] = ()


@dataclass
class _Pending:
    """A parsed document waiting for its batch to be written."""

    doc: SourceDocument
    content_hash: str
    parsed: ParsedDocument


@dataclass
class _RunState:
    counts: RunCounts = field(default_factory=RunCounts)
    failures: list[SyncFailure] = field(default_factory=list)

    def add(self, **kwargs: int) -> None:
        self.counts = self.counts + RunCounts(**kwargs)


#: Failure kinds that say nothing about the file (the store or the models were at fault):
#: the next sync retries such a document even when the file did not change.
RETRYABLE_FAILURES: frozenset[str] = frozenset(
    {FailureKind.STORE_FAILED, FailureKind.ENCODE_FAILED}
)


class PlanAction(StrEnum):
    """What a sync does with one listed document."""

    UNCHANGED = "unchanged"  # nothing
    TOUCH = "touch"  # same bytes, new mtime or size: record those only
    FAIL = "fail"  # fails without being parsed (too large, unreadable)
    PARSE = "parse"  # parse, encode and write it


@dataclass(frozen=True)
class DocumentPlan:
    """The decision :func:`plan_document` takes for one document.

    Attributes:
        action: What to do.
        content_hash: SHA-256 of the file's bytes, when it was read.
        kind: The failure kind, for ``FAIL``.
        message: The failure message, for ``FAIL``.
    """

    action: PlanAction
    content_hash: str | None = None
    kind: str | None = None
    message: str | None = None


def plan_document(
    doc: SourceDocument,
    before: DocumentState | None,
    *,
    max_file_bytes: int | None = None,
    retry_failed: bool = False,
    lost_points: bool = False,
) -> DocumentPlan:
    """Decide what a sync does with a listed document, given what the ledger knows.

    The rules of :class:`SyncPipeline`, as a plain function (background syncs use it too):
    same size and mtime as an indexed or failed document → unchanged; otherwise the bytes
    are hashed and the same hash → touch only; anything else is parsed. A document that
    failed for a reason in :data:`RETRYABLE_FAILURES`, or any failed document with
    ``retry_failed``, is parsed again even when unchanged; so is an indexed document
    whose points went missing (``lost_points``).

    The file is read (hashed) only when its size or mtime changed.
    """
    if max_file_bytes is not None and doc.size > max_file_bytes:
        if before and before.status == DocumentStatus.FAILED and before.size == doc.size:
            return DocumentPlan(PlanAction.UNCHANGED)
        limit_mb = max_file_bytes / 2**20
        message = (
            f"{doc.key}: file is {doc.size / 2**20:.1f} MiB, over the limit of {limit_mb:.0f} MiB; "
            "raise TRIBRID_PARSING__MAX_FILE_MB to index it"
        )
        return DocumentPlan(PlanAction.FAIL, kind=FailureKind.TOO_LARGE, message=message)
    settled = before is not None and (
        before.status == DocumentStatus.INDEXED
        or (
            before.status == DocumentStatus.FAILED
            and not retry_failed
            and before.error_kind not in RETRYABLE_FAILURES
        )
    )
    if (
        before is not None
        and settled
        and not lost_points
        and (before.size, before.mtime_ns) == (doc.size, doc.mtime_ns)
    ):
        return DocumentPlan(PlanAction.UNCHANGED)
    try:
        digest = doc.content_hash
    except OSError as e:
        message = f"{doc.key}: cannot read: {e.strerror or e}; check it exists and is readable"
        return DocumentPlan(PlanAction.FAIL, kind=FailureKind.UNREADABLE, message=message)
    if before is not None and settled and not lost_points and before.content_hash == digest:
        return DocumentPlan(PlanAction.TOUCH, content_hash=digest)
    return DocumentPlan(PlanAction.PARSE, content_hash=digest)


@dataclass(frozen=True)
class DocumentRecord:
    """What the ledger records for one parsed document once its points are written."""

    key: str
    size: int
    mtime_ns: int
    content_hash: str
    chunks: tuple[ChunkRecord, ...]


@dataclass(frozen=True)
class WriteBatch:
    """A batch of parsed documents, encoded and ready to write (see :func:`encode_batch`).

    Attributes:
        source_id: Ledger id of the source.
        points: The new points (chunks whose id the ledger did not list), encoded.
        payload_updates: ``(point id, payload)`` of kept points whose position changed.
        documents: What to record in the ledger, once the points are written.
        reused: Chunks whose existing point was kept.
    """

    source_id: int
    points: tuple[Point, ...]
    payload_updates: tuple[tuple[str, Mapping[str, Any]], ...]
    documents: tuple[DocumentRecord, ...]
    reused: int


def _known_point_ids(
    ledger: Ledger,
    batch: Sequence[tuple[SourceDocument, str, ParsedDocument]],
    existing: dict[str, DocumentState],
    trusted_ids: set[str] | None,
) -> dict[str, ChunkRecord]:
    doc_ids = [existing[doc.key].id for doc, _, _ in batch if doc.key in existing]
    if not doc_ids:
        return {}
    by_doc = ledger.chunks_of_many(doc_ids)
    known = {rec.point_id: rec for records in by_doc.values() for rec in records}
    if trusted_ids is not None:
        known = {pid: rec for pid, rec in known.items() if pid in trusted_ids}
    return known


def _split_chunks(
    batch: Sequence[tuple[SourceDocument, str, ParsedDocument]], known_ids: dict[str, ChunkRecord]
) -> tuple[list[Chunk], list[tuple[str, Mapping[str, Any]]], int]:
    """The chunks to encode, the payloads to refresh, and how many points are kept."""
    to_encode = [
        chunk
        for _, _, parsed in batch
        for chunk in parsed.chunks
        if chunk.point_id not in known_ids
    ]
    moved: list[tuple[str, Mapping[str, Any]]] = []
    reused = 0
    for _, _, parsed in batch:
        for chunk in parsed.chunks:
            before = known_ids.get(chunk.point_id)
            if before is None:
                continue
            reused += 1
            if before.chunk_index != chunk.index:
                # Same text, new position: the vectors stay, the payload follows.
                moved.append((chunk.point_id, chunk.payload()))
    return to_encode, moved, reused


def encode_chunks(encoders: EncoderSet, chunks: Sequence[Chunk]) -> list[Point]:
    """Encode chunks into the points the store holds: three vectors and the payload."""
    encoded = encoders.encode_documents([c.text for c in chunks])
    return [
        Point(
            id=chunk.point_id,
            dense=encoded.dense[i].tolist(),
            splade=encoded.splade[i],
            bm25=encoded.bm25[i],
            payload=chunk.payload(),
        )
        for i, chunk in enumerate(chunks)
    ]


def _record_documents(
    ledger: Ledger, store: VectorStore, source_id: int, documents: Iterable[DocumentRecord]
) -> int:
    stale_total = 0
    for record in documents:
        stale = ledger.record_indexed(
            source_id,
            record.key,
            path=record.key,
            size=record.size,
            mtime_ns=record.mtime_ns,
            content_hash=record.content_hash,
            chunks=record.chunks,
        )
        if stale:
            store.delete(stale)
            stale_total += len(stale)
    return stale_total


def _document_records(
    batch: Sequence[tuple[SourceDocument, str, ParsedDocument]],
) -> list[DocumentRecord]:
    return [
        DocumentRecord(
            key=doc.key,
            size=doc.size,
            mtime_ns=doc.mtime_ns,
            content_hash=digest,
            chunks=tuple(ChunkRecord(c.point_id, c.index, c.content_hash) for c in parsed.chunks),
        )
        for doc, digest, parsed in batch
    ]


def encode_batch(
    ledger: Ledger,
    encoders: EncoderSet,
    source_id: int,
    batch: Sequence[tuple[SourceDocument, str, ParsedDocument]],
    *,
    existing: dict[str, DocumentState],
) -> WriteBatch:
    """Encode the new chunks of a batch without touching the store (first half of a write).

    Reads the ledger to reuse the points of chunks whose text did not change. The
    result goes to :func:`commit_batch`, in this process or in the one that owns the
    store.
    """
    known_ids = _known_point_ids(ledger, batch, existing, None)
    to_encode, moved, reused = _split_chunks(batch, known_ids)
    points = encode_chunks(encoders, to_encode) if to_encode else []
    return WriteBatch(
        source_id=source_id,
        points=tuple(points),
        payload_updates=tuple(moved),
        documents=tuple(_document_records(batch)),
        reused=reused,
    )


def commit_batch(
    ledger: Ledger, store: VectorStore, batch: WriteBatch, *, upsert_batch: int = 256
) -> RunCounts:
    """Write an encoded batch: points first, then the ledger, then stale points out.

    Idempotent: committing the same batch twice leaves the same store and ledger.
    """
    for point_id, payload in batch.payload_updates:
        store.set_payload(point_id, payload)
    for start in range(0, len(batch.points), upsert_batch):
        store.upsert(batch.points[start : start + upsert_batch])
    stale = _record_documents(ledger, store, batch.source_id, batch.documents)
    return RunCounts(
        indexed=len(batch.documents),
        chunks_embedded=len(batch.points),
        chunks_reused=batch.reused,
        chunks_deleted=stale,
    )


class DocumentWriter:
    """Encodes the new chunks of a batch of parsed documents and writes them.

    Chunks whose point already exists (same document, same text) are not encoded again;
    only their payload is refreshed when their position changed.

    Args:
        ledger: Where documents and chunks are recorded.
        store: Where points are written.
        encoders: The three encoders.
        upsert_batch: Chunks encoded and upserted together.
    """

    def __init__(
        self, *, ledger: Ledger, store: VectorStore, encoders: EncoderSet, upsert_batch: int = 256
    ) -> None:
        self._ledger = ledger
        self._store = store
        self._encoders = encoders
        self._upsert_batch = upsert_batch

    def write(
        self,
        source_id: int,
        batch: Sequence[tuple[SourceDocument, str, ParsedDocument]],
        *,
        existing: dict[str, DocumentState],
        trusted_ids: set[str] | None = None,
        on_encoded: Callable[[int], None] | None = None,
    ) -> RunCounts:
        """Write a batch of parsed documents and record them in the ledger.

        Args:
            source_id: Ledger id of the source.
            batch: ``(document, content hash, parsed document)`` triples.
            existing: Ledger state of documents seen before, by key.
            trusted_ids: When given, only these existing point ids are reused; any other
                chunk is re-encoded (used when the store lost points the ledger lists).
            on_encoded: Called with the number of chunks after each slice is written.

        Returns:
            The chunk and document counts of the batch.
        """
        known_ids = _known_point_ids(self._ledger, batch, existing, trusted_ids)
        to_encode, moved, reused = _split_chunks(batch, known_ids)
        for point_id, payload in moved:
            self._store.set_payload(point_id, payload)
        # Encoded and written a slice at a time: memory stays flat and progress moves
        # even when one long document brings thousands of chunks.
        for start in range(0, len(to_encode), self._upsert_batch):
            part = to_encode[start : start + self._upsert_batch]
            self._store.upsert(encode_chunks(self._encoders, part))
            if on_encoded is not None:
                on_encoded(len(part))
        stale_total = _record_documents(
            self._ledger, self._store, source_id, _document_records(batch)
        )
        return RunCounts(
            indexed=len(batch),
            chunks_embedded=len(to_encode),
            chunks_reused=reused,
            chunks_deleted=stale_total,
        )


class SyncPipeline:
    """Brings the index of one source in line with the source.

    Rules:

    * a document whose size and mtime match the ledger costs nothing; one whose bytes
      hash the same is only touched in the ledger;
    * a changed document is re-parsed, and only its chunks with new text are encoded;
      stale points are deleted after the new ones are written;
    * a document gone from the source has its points removed and its row marked deleted;
      a rename is a delete plus an add;
    * a failed document is retried when it changes (or with ``retry_failed``);
    * one bad file never stops the run.

    Example:
        >>> pipeline = SyncPipeline(ledger=ledger, store=store, encoders=encoders,
        ...                         parser_factory=lambda: ParsePool(...))
        >>> report = pipeline.sync(LocalFolderConnector("docs"))

    Args:
        ledger: The ledger.
        store: The vector store.
        encoders: The three encoders.
        parser_factory: Opens a parser (a context manager), only when something needs parsing.
        batch_chunks: Chunks gathered across documents before they are encoded together.
        max_file_bytes: Files larger than this fail as ``too_large`` without being read.
        retry_failed: Parse failed documents again even when they did not change.
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        store: VectorStore,
        encoders: EncoderSet,
        parser_factory: ParserFactory,
        batch_chunks: int = 256,
        max_file_bytes: int | None = None,
        retry_failed: bool = False,
    ) -> None:
        if batch_chunks <= 0:
            raise ValueError(f"batch_chunks must be > 0, got {batch_chunks}")
        self._ledger = ledger
        self._store = store
        self._parser_factory = parser_factory
        self._encoders = encoders
        self._writer = DocumentWriter(ledger=ledger, store=store, encoders=encoders)
        self._batch_chunks = batch_chunks
        self._max_file_bytes = max_file_bytes
        self._retry_failed = retry_failed

    def sync(self, connector: Connector, *, progress: ProgressListener | None = None) -> SyncReport:
        """Run one sync of ``connector``'s source and return what it did."""
        listener = progress or _Silent()
        started = time.monotonic()
        source_id = self._ledger.ensure_source(
            connector.source_key,
            kind=connector.source_key.split(":", 1)[0],
            location=connector.source_key,
        )
        run_id = self._ledger.start_run(source_id)
        state = _RunState()
        try:
            self._sync(connector, source_id, state, listener)
            self._store.flush()
        except BaseException as e:
            self._ledger.finish_run(run_id, state.counts, status=RunStatus.FAILED, error=repr(e))
            raise
        self._ledger.finish_run(run_id, state.counts, status=RunStatus.COMPLETED)
        return SyncReport(
            run_id=run_id,
            source_key=connector.source_key,
            counts=state.counts,
            duration_s=time.monotonic() - started,
            failures=tuple(state.failures),
        )

    def _sync(
        self, connector: Connector, source_id: int, state: _RunState, listener: ProgressListener
    ) -> None:
        known = {s.key: s for s in self._ledger.document_states(source_id)}
        trusted = self._trusted_point_ids(source_id)
        damaged = self._damaged_documents(known, trusted) if trusted is not None else set()
        seen: set[str] = set()
        unlisted_prefixes: list[str] = []
        jobs: dict[str, tuple[SourceDocument, str]] = {}

        def plan() -> Iterator[ParseJob]:
            for item in connector.list_documents():
                seen.add(item.key)
                state.add(seen=1)
                if isinstance(item, ListingFailure):
                    unlisted_prefixes.append(item.key.rstrip("/") + "/")
                    self._fail(
                        source_id, item.key, None, None, item.kind, item.message, state, listener
                    )
                    continue
                job = self._plan_document(
                    item, known.get(item.key), source_id, state, listener, item.key in damaged
                )
                if job is not None:
                    jobs[item.key] = (item, job[1])
                    yield job[0]

        # Listing and planning first, on this thread (they write to the ledger and the
        # store); then parsing runs ahead on its own thread while this one encodes.
        planned = list(plan())
        pending: list[_Pending] = []
        pending_chunks = 0
        opened: list[AbstractContextManager[DocumentParser]] = []
        parsing = _ParseAhead(
            _LazyParser(self._parser_factory, opened, on_open=self._warm_up_in_background),
            planned,
            max_chunks=2 * self._batch_chunks,
        )
        try:
            for job, outcome in parsing:
                doc, digest = jobs.pop(job.document_key)
                if isinstance(outcome, DocumentFailure):
                    self._fail(
                        source_id,
                        doc.key,
                        doc,
                        digest,
                        outcome.kind,
                        outcome.message,
                        state,
                        listener,
                    )
                    continue
                pending.append(_Pending(doc, digest, outcome))
                pending_chunks += len(outcome.chunks)
                if pending_chunks >= self._batch_chunks:
                    self._flush(source_id, pending, known, trusted, state, listener)
                    pending, pending_chunks = [], 0
            self._flush(source_id, pending, known, trusted, state, listener)
        finally:
            parsing.close()
            for context in opened:
                context.__exit__(None, None, None)
        self._remove_vanished(known, seen, unlisted_prefixes, state, listener)
        self._remove_orphans(source_id, connector.source_key, state)

    def _warm_up_in_background(self) -> None:
        # Loading torch and the models takes seconds; doing it while the parse workers
        # start and parse the first files hides most of it. Errors resurface on first use.
        def load() -> None:
            try:
                self._encoders.warm_up()
            except Exception:  # re-raised where the models are first used
                log.debug("background model load failed", exc_info=True)

        threading.Thread(target=load, name="tribrid-warm-up", daemon=True).start()

    def _trusted_point_ids(self, source_id: int) -> set[str] | None:
        # The store is derived from the ledger. If it holds fewer points than the ledger
        # lists (a recreated collection, a lost volume), reuse only what is really there.
        if self._store.count() >= self._ledger.count_chunks():
            return None
        log.warning(
            "the store holds fewer points than the ledger lists; re-indexing what is missing"
        )
        return self._store.ids()

    def _damaged_documents(self, known: dict[str, DocumentState], present: set[str]) -> set[str]:
        """Keys of the documents with at least one point missing from the store."""
        by_id = {s.id: key for key, s in known.items() if s.chunk_count > 0}
        ids = list(by_id)
        damaged: set[str] = set()
        for start in range(0, len(ids), 1000):
            chunks = self._ledger.chunks_of_many(ids[start : start + 1000])
            damaged.update(
                by_id[doc_id]
                for doc_id, records in chunks.items()
                if any(r.point_id not in present for r in records)
            )
        return damaged

    def _plan_document(
        self,
        doc: SourceDocument,
        before: DocumentState | None,
        source_id: int,
        state: _RunState,
        listener: ProgressListener,
        lost_points: bool,
    ) -> tuple[ParseJob, str] | None:
        plan = plan_document(
            doc,
            before,
            max_file_bytes=self._max_file_bytes,
            retry_failed=self._retry_failed,
            lost_points=lost_points,
        )
        if plan.action == PlanAction.PARSE:
            assert plan.content_hash is not None
            job = ParseJob(source_key=doc.source_key, document_key=doc.key, path=doc.path)
            if isinstance(doc, TextDocument):
                job = replace(job, text=doc.text, title=doc.title)
            return job, plan.content_hash
        if plan.action == PlanAction.FAIL:
            assert plan.kind is not None and plan.message is not None
            self._fail(source_id, doc.key, doc, None, plan.kind, plan.message, state, listener)
            return None
        if plan.action == PlanAction.TOUCH:
            assert before is not None
            self._ledger.record_unchanged(before.id, mtime_ns=doc.mtime_ns, size=doc.size)
        state.add(unchanged=1)
        listener.document_done(doc.key, "unchanged", 0)
        return None

    def _flush(
        self,
        source_id: int,
        pending: list[_Pending],
        known: dict[str, DocumentState],
        trusted: set[str] | None,
        state: _RunState,
        listener: ProgressListener,
    ) -> None:
        if not pending:
            return
        counts = self._writer.write(
            source_id,
            [(p.doc, p.content_hash, p.parsed) for p in pending],
            existing=known,
            trusted_ids=trusted,
            on_encoded=listener.chunks_embedded,
        )
        state.counts = state.counts + counts
        for p in pending:
            listener.document_done(p.doc.key, "indexed", len(p.parsed.chunks))

    def _fail(
        self,
        source_id: int,
        key: str,
        doc: SourceDocument | None,
        digest: str | None,
        kind: str,
        message: str,
        state: _RunState,
        listener: ProgressListener,
    ) -> None:
        stale = self._ledger.record_failed(
            source_id,
            key,
            path=key,
            size=doc.size if doc else 0,
            mtime_ns=doc.mtime_ns if doc else 0,
            content_hash=digest,
            kind=str(kind),
            message=message,
        )
        if stale:
            self._store.delete(stale)
        state.add(failed=1, chunks_deleted=len(stale))
        state.failures.append(SyncFailure(key, str(kind), message))
        listener.document_done(key, "failed", 0)

    def _remove_orphans(self, source_id: int, source_key: str, state: _RunState) -> None:
        # Points the ledger does not list (a run killed between its upsert and its ledger
        # commit, for a file since deleted) are found by a cheap count first, and only
        # then by comparing ids.
        if self._store.count() == self._ledger.count_chunks():
            return
        listed = set(self._ledger.all_point_ids(source_id))
        orphans = sorted(self._store.ids({"source_key": source_key}) - listed)
        if orphans:
            log.warning(
                "removing %d points of %s that the ledger does not list", len(orphans), source_key
            )
            self._store.delete(orphans)
            state.add(chunks_deleted=len(orphans))

    def _remove_vanished(
        self,
        known: dict[str, DocumentState],
        seen: set[str],
        unlisted_prefixes: list[str],
        state: _RunState,
        listener: ProgressListener,
    ) -> None:
        for key, before in known.items():
            if key in seen or before.status == DocumentStatus.DELETED:
                continue
            if any(key.startswith(prefix) for prefix in unlisted_prefixes):
                continue  # its folder could not be listed this time: not evidence of deletion
            stale = self._ledger.mark_deleted(before.id)
            if stale:
                self._store.delete(stale)
            state.add(deleted=1, chunks_deleted=len(stale))
            listener.document_done(key, "deleted", 0)


class _ParseAhead:
    """Drains a parser on a thread of its own, so files are parsed while batches encode.

    Without it, the thread that encodes also collects the parse pool's results: while a
    batch encodes, the pool finishes the few jobs it holds and idles, and parsing and
    encoding take turns instead of overlapping. Only the parser is used on that thread;
    the ledger, the store and the encoders stay with the caller. Parsed documents wait
    until ``max_chunks`` chunks are waiting (one document always may, however large),
    which bounds memory.

    Iterate it once, on one thread; :meth:`close` it when done or abandoning it.
    """

    def __init__(self, parser: _LazyParser, jobs: Sequence[ParseJob], *, max_chunks: int) -> None:
        self._max_chunks = max_chunks
        self._ready: deque[tuple[ParseJob, ParseOutcome]] = deque()
        self._waiting_chunks = 0
        self._finished = False
        self._error: BaseException | None = None
        self._stop = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, args=(parser, jobs), name="tribrid-parse-ahead", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _cost(outcome: ParseOutcome) -> int:
        return len(outcome.chunks) if isinstance(outcome, ParsedDocument) else 0

    def _run(self, parser: _LazyParser, jobs: Sequence[ParseJob]) -> None:
        results = parser.imap(jobs)
        try:
            for job, outcome in results:
                with self._changed:
                    while self._ready and self._waiting_chunks >= self._max_chunks:
                        if self._stop:
                            return
                        self._changed.wait(0.5)
                    if self._stop:
                        return
                    self._ready.append((job, outcome))
                    self._waiting_chunks += self._cost(outcome)
                    self._changed.notify_all()
        except BaseException as e:  # handed to the caller, raised on its thread
            with self._changed:
                self._error = e
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()
            with self._changed:
                self._finished = True
                self._changed.notify_all()

    def __iter__(self) -> Iterator[tuple[ParseJob, ParseOutcome]]:
        while True:
            with self._changed:
                while not self._ready and not self._finished:
                    self._changed.wait()
                if self._ready:
                    job, outcome = self._ready.popleft()
                    self._waiting_chunks -= self._cost(outcome)
                    self._changed.notify_all()
                elif self._error is not None:
                    raise self._error
                else:
                    return
            yield job, outcome

    def close(self, timeout: float = 10.0) -> None:
        """Stop parsing ahead and wait (up to ``timeout`` s) for the thread to end.

        A thread stuck in a long parse is left to end when the parser is closed.
        """
        with self._changed:
            self._stop = True
            self._changed.notify_all()
        self._thread.join(timeout)


class _LazyParser:
    """Opens the real parser on the first job only, so a sync with nothing to parse
    never pays for starting parse workers."""

    def __init__(
        self,
        factory: ParserFactory,
        opened: list[AbstractContextManager[DocumentParser]],
        *,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self._factory = factory
        self._opened = opened
        self._on_open = on_open

    def imap(self, jobs: Iterable[ParseJob]) -> Iterator[tuple[ParseJob, ParseOutcome]]:
        iterator = iter(jobs)
        first = next(iterator, None)
        if first is None:
            return
        context = self._factory()
        parser = context.__enter__()
        self._opened.append(context)
        if self._on_open is not None:
            self._on_open()

        def chained() -> Iterator[ParseJob]:
            yield first
            yield from iterator

        yield from parser.imap(chained())
