"""The foreground sync of one source: list, plan, parse, encode, write, in one process.

:class:`SyncPipeline` is a thin caller of the sync's stages: the listing diff and the
planning rule of :mod:`~tribrid.ingestion.plan`, the parsers of
:mod:`~tribrid.ingestion.parse`, and the writer, failure recorder and removers of
:mod:`~tribrid.ingestion.write`. The background runtime (:mod:`tribrid.background`)
calls the same stages from Celery tasks. What this module adds is the overlap: parsing
runs ahead on a thread of its own while batches encode.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tribrid import logs
from tribrid.connectors.archives import ArchiveLimits, ArchiveMember
from tribrid.connectors.base import Connector, SourceDocument, TextDocument, source_location
from tribrid.encoders import EncoderSet
from tribrid.errors import ChunkingChangedError, SourceBusyError
from tribrid.ingestion.base import DocumentFailure, ParsedDocument, ParseOutcome
from tribrid.ingestion.parse import DocumentParser, ParseJob, ParseOptions, ParserFactory
from tribrid.ingestion.plain_text import is_candidate, parse_plain_text
from tribrid.ingestion.plan import (
    ListingDiff,
    PlanAction,
    Planned,
    chunking_change,
    record_chunking,
    settle_unchanged,
)
from tribrid.ingestion.vector_cache import VectorCache
from tribrid.ingestion.write import (
    DocumentWriter,
    record_failure,
    remove_orphans,
    remove_vanished,
)
from tribrid.ledger.base import DocumentState, DocumentStatus, Ledger, RunCounts, RunStatus
from tribrid.store.base import VectorStore
from tribrid.store.generations import store_generation

log = logging.getLogger(__name__)


class ProgressListener(Protocol):
    """Receives progress as a sync runs (the CLI draws it)."""

    def document_done(self, key: str, outcome: str, chunks: int) -> None:
        """A document ended as ``indexed``, ``unchanged``, ``failed`` or ``deleted``."""
        ...

    def chunks_embedded(self, count: int) -> None:
        """``count`` more chunks were written (encoded, or with reused vectors)."""
        ...


#: A listener may also have ``listing_done(to_parse: int)``: called once the source is
#: listed and planned, with the number of documents left to parse (for an ETA).
LISTING_DONE = "listing_done"


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
    * each member of an archive is a document of its own (``a.zip!/dir/m.pdf``), and a
      changed archive re-parses only the members whose bytes changed;
    * one bad file never stops the run.

    Example:
        >>> pipeline = SyncPipeline(ledger=ledger, store=store, encoders=encoders,
        ...                         parser_factory=lambda: ParsePool(...))  # doctest: +SKIP
        >>> report = pipeline.sync(LocalFolderConnector("docs"))

    Args:
        ledger: The ledger.
        store: The vector store.
        encoders: The three encoders.
        parser_factory: Opens a parser (a context manager), only when something needs parsing.
        batch_chunks: Chunks gathered across documents before they are encoded together.
        max_file_bytes: Files larger than this fail as ``too_large`` without being read.
        retry_failed: Parse failed documents again even when they did not change.
        archives: Limits of reading archives, whose members are indexed as documents of
            their own; ``None`` treats archives as plain files.
        fresh: The store is a generation being built (see :mod:`tribrid.ingestion.rebuild`):
            only points already in it are reused, every other document is indexed again.
            It may also be cut with other ``chunking`` than the source was.
        vector_cache: Vectors of chunk texts encoded before (in any document or run),
            reused instead of encoding the same text again.
        plain_text: Chunking options for ``.txt`` files chunked in this process
            (:mod:`~tribrid.ingestion.plain_text`); ``None`` sends every file to the parser.
        chunking: The chunking settings the parser cuts with. A source cut with other
            ones is refused (see :func:`~tribrid.ingestion.plan.chunking_change`) unless
            ``fresh``; ``None`` checks nothing.
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
        archives: ArchiveLimits | None = ArchiveLimits(),  # noqa: B008 - frozen, shared
        fresh: bool = False,
        vector_cache: VectorCache | None = None,
        plain_text: ParseOptions | None = None,
        chunking: Mapping[str, Any] | None = None,
    ) -> None:
        if batch_chunks <= 0:
            raise ValueError(f"batch_chunks must be > 0, got {batch_chunks}")
        self._ledger = ledger
        self._store = store
        self._parser_factory = parser_factory
        self._encoders = encoders
        self._writer = DocumentWriter(
            ledger=ledger, store=store, encoders=encoders, cache=vector_cache
        )
        #: The generation the store serves (None: a store without generations).
        self._generation = store_generation(store)
        self._warming = False
        self._plain_text = plain_text
        self._batch_chunks = batch_chunks
        self._max_file_bytes = max_file_bytes
        self._retry_failed = retry_failed
        self._archives = archives
        self._fresh = fresh
        self._chunking = chunking

    def sync(self, connector: Connector, *, progress: ProgressListener | None = None) -> SyncReport:
        """Run one sync of ``connector``'s source and return what it did."""
        listener = progress or _Silent()
        started = time.monotonic()
        source_id = self._ledger.ensure_source(
            connector.source_key,
            kind=connector.source_key.split(":", 1)[0],
            location=source_location(connector),
        )
        with self._ledger.hold_source(source_id) as held:
            _refuse_if_busy(self._ledger, source_id, connector.source_key, held)
            if self._chunking is not None and not self._fresh:
                reason = chunking_change(
                    self._ledger, source_id, connector.source_key, self._chunking
                )
                if reason:
                    raise ChunkingChangedError(reason)
            run_id = self._ledger.start_run(source_id)
            state = _RunState()
            try:
                with logs.bind(run_id=run_id):
                    self._sync(connector, source_id, state, listener)
                self._store.flush()
            except BaseException as e:
                self._ledger.finish_run(
                    run_id, state.counts, status=RunStatus.FAILED, error=repr(e)
                )
                raise
            self._ledger.finish_run(run_id, state.counts, status=RunStatus.COMPLETED)
            record_chunking(self._ledger, source_id, self._chunking)
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
        trusted = self._store.ids() if self._fresh else self._trusted_point_ids()
        damaged = self._damaged_documents(known, trusted) if trusted is not None else set()
        # Documents whose points are in another generation than the store's (a rebuild
        # writing a new one, or the live one after a rebuild that failed) are indexed
        # again into this one; only the points already here may be reused.
        moved = {
            key
            for key, s in known.items()
            if self._generation is not None
            and s.generation != self._generation
            and s.status == DocumentStatus.INDEXED
            and s.chunk_count > 0
        }
        if moved:
            if trusted is None:
                trusted = self._store.ids()
            damaged = damaged | moved
        diff = ListingDiff(
            connector,
            known,
            max_file_bytes=self._max_file_bytes,
            retry_failed=self._retry_failed,
            damaged=damaged,
            archives=self._archives,
        )
        jobs: dict[str, tuple[SourceDocument, str]] = {}
        planned: list[ParseJob] = []
        # Listing and planning first, on this thread (they write to the ledger and the
        # store); then parsing runs ahead on its own thread while this one encodes.
        for item in diff:
            state.add(seen=1)
            job = self._settle(item, source_id, state, listener)
            if job is not None:
                # Load the models while the rest is listed and the first files parse.
                self._warm_up_in_background()
                assert item.doc is not None and item.plan.content_hash is not None
                jobs[item.key] = (item.doc, item.plan.content_hash)
                planned.append(job)
        listing_done = getattr(listener, LISTING_DONE, None)
        if callable(listing_done):
            listing_done(len(planned))
        pending: list[_Pending] = []
        pending_chunks = 0
        opened: list[AbstractContextManager[DocumentParser]] = []
        parsing = _ParseAhead(
            _LazyParser(self._parser_factory, opened, on_open=self._warm_up_in_background),
            planned,
            max_chunks=2 * self._batch_chunks,
            text_options=self._plain_text,
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
        state.counts += remove_vanished(
            self._ledger,
            self._store.delete,
            diff.vanished(),
            on_deleted=lambda key: listener.document_done(key, "deleted", 0),
        )
        removed = remove_orphans(self._ledger, self._store, source_id, connector.source_key)
        state.add(chunks_deleted=removed)

    def _settle(
        self, item: Planned, source_id: int, state: _RunState, listener: ProgressListener
    ) -> ParseJob | None:
        """Act on a plan that needs no parsing; return the parse job of one that does."""
        plan = item.plan
        if plan.action == PlanAction.PARSE:
            assert item.doc is not None
            doc = item.doc
            job = ParseJob(source_key=doc.source_key, document_key=doc.key, path=doc.path)
            if isinstance(doc, TextDocument):
                job = replace(job, text=doc.text, title=doc.title)
            elif isinstance(doc, ArchiveMember):
                job = replace(job, member=doc.member)
            return job
        if plan.action == PlanAction.FAIL:
            assert plan.kind is not None and plan.message is not None
            self._fail(
                source_id, item.key, item.doc, None, plan.kind, plan.message, state, listener
            )
            return None
        state.counts += settle_unchanged(self._ledger, item)
        listener.document_done(item.key, "unchanged", 0)
        return None

    def _warm_up_in_background(self) -> None:
        # Loading the models takes seconds; doing it while the rest of the folder is
        # listed and the first files parse hides most of it. Errors resurface on first use.
        if self._warming:
            return
        self._warming = True

        def load() -> None:
            try:
                self._encoders.warm_up()
            except Exception:  # re-raised where the models are first used
                log.debug("background model load failed", exc_info=True)

        threading.Thread(target=load, name="tribrid-warm-up", daemon=True).start()

    def _trusted_point_ids(self) -> set[str] | None:
        # The store is derived from the ledger. If it holds fewer points than the ledger
        # lists (a recreated collection, a lost volume), reuse only what is really there.
        if self._store.count() >= self._ledger.count_chunks():
            return None
        log.warning(
            "the store holds fewer points than the ledger lists; re-indexing what is missing"
        )
        return self._store.ids()

    def _damaged_documents(self, known: Mapping[str, DocumentState], present: set[str]) -> set[str]:
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

    def _flush(
        self,
        source_id: int,
        pending: list[_Pending],
        known: Mapping[str, DocumentState],
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
        stale = record_failure(
            self._ledger,
            self._store.delete,
            source_id,
            key,
            kind=kind,
            message=message,
            size=doc.size if doc else 0,
            mtime_ns=doc.mtime_ns if doc else 0,
            content_hash=digest,
        )
        state.add(failed=1, chunks_deleted=stale)
        state.failures.append(SyncFailure(key, str(kind), message))
        listener.document_done(key, "failed", 0)


def _refuse_if_busy(ledger: Ledger, source_id: int, source_key: str, held: bool) -> None:
    """Refuse a sync while another sync of the same source is at work: no double work.

    Raises:
        SourceBusyError: Another process is listing or syncing the source, or a
            background run of it still has documents in the workers' hands.
    """
    if not held:
        raise SourceBusyError(
            f"source {source_key} is being synced by another process right now (a "
            "`tribrid ingest`, a watcher or a background listing); this sync did nothing. "
            "Run it again when that one ends (`tribrid status`)"
        )
    for run in ledger.busy_runs(source_id):
        raise SourceBusyError(
            f"source {source_key} has background run #{run.id} still at work; this sync did "
            f"nothing. Follow it with `tribrid status --run {run.id}` and sync again after it "
            "ends (a run whose workers died stops counting after 15 minutes of quiet)"
        )


class _ParseAhead:
    """Drains a parser on a thread of its own, so files are parsed while batches encode.

    Without it, the thread that encodes also collects the parse pool's results: while a
    batch encodes, the pool finishes the few jobs it holds and idles, and parsing and
    encoding take turns instead of overlapping. Only the parser is used on that thread;
    the ledger, the store and the encoders stay with the caller. Parsed documents wait
    until ``max_chunks`` chunks are waiting (one document always may, however large),
    which bounds memory.

    With ``text_options``, plain-text files are chunked on a second thread, in this
    process (:mod:`~tribrid.ingestion.plain_text`), and only the files that path leaves
    go to the parser, which is then never opened when there are none.

    Iterate it once, on one thread; :meth:`close` it when done or abandoning it.
    """

    def __init__(
        self,
        parser: _LazyParser,
        jobs: Sequence[ParseJob],
        *,
        max_chunks: int,
        text_options: ParseOptions | None = None,
    ) -> None:
        self._max_chunks = max_chunks
        self._ready: deque[tuple[ParseJob, ParseOutcome]] = deque()
        self._waiting_chunks = 0
        self._running = 1
        self._error: BaseException | None = None
        self._stop = False
        self._changed = threading.Condition()
        self._feed: queue.SimpleQueue[ParseJob | None] = queue.SimpleQueue()
        texts = [j for j in jobs if is_candidate(j)] if text_options is not None else []
        if texts:
            for job in jobs:
                if not is_candidate(job):
                    self._feed.put(job)
            parser_jobs: Iterable[ParseJob] = iter(self._feed.get, None)
            self._running = 2
            self._text_thread: threading.Thread | None = threading.Thread(
                target=self._run_text,
                args=(texts, text_options),
                name="tribrid-plain-text",
                daemon=True,
            )
        else:
            parser_jobs = jobs
            self._text_thread = None
        self._thread = threading.Thread(
            target=self._run, args=(parser, parser_jobs), name="tribrid-parse-ahead", daemon=True
        )
        self._thread.start()
        if self._text_thread is not None:
            self._text_thread.start()

    @staticmethod
    def _cost(outcome: ParseOutcome) -> int:
        return len(outcome.chunks) if isinstance(outcome, ParsedDocument) else 0

    def _deliver(self, job: ParseJob, outcome: ParseOutcome) -> bool:
        """Hand one outcome to the caller, waiting for room; ``False`` once stopped."""
        with self._changed:
            while self._ready and self._waiting_chunks >= self._max_chunks:
                if self._stop:
                    return False
                self._changed.wait(0.5)
            if self._stop:
                return False
            self._ready.append((job, outcome))
            self._waiting_chunks += self._cost(outcome)
            self._changed.notify_all()
            return True

    def _done(self, error: BaseException | None) -> None:
        with self._changed:
            if error is not None and self._error is None:
                self._error = error
            self._running -= 1
            self._changed.notify_all()

    def _run_text(self, jobs: Sequence[ParseJob], options: ParseOptions) -> None:
        error: BaseException | None = None
        try:
            for job in jobs:
                if self._stop:
                    return
                outcome = parse_plain_text(job, options)
                if outcome is None:
                    self._feed.put(job)  # not one for this path: the parser takes it
                elif not self._deliver(job, outcome):
                    return
        except BaseException as e:  # handed to the caller, raised on its thread
            error = e
        finally:
            self._feed.put(None)  # the parser's job list ends here
            self._done(error)

    def _run(self, parser: _LazyParser, jobs: Iterable[ParseJob]) -> None:
        results = parser.imap(jobs)
        error: BaseException | None = None
        try:
            for job, outcome in results:
                if not self._deliver(job, outcome):
                    return
        except BaseException as e:  # handed to the caller, raised on its thread
            error = e
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()
            self._done(error)

    def __iter__(self) -> Iterator[tuple[ParseJob, ParseOutcome]]:
        while True:
            with self._changed:
                while not self._ready and self._running and self._error is None:
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
        self._feed.put(None)  # a parser waiting for more jobs gets none
        if self._text_thread is not None:
            self._text_thread.join(timeout)
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
