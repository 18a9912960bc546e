"""Background ingestion as plain functions: queue a sync, process documents, give up.

The Celery tasks of :mod:`tribrid.background.worker` are thin wrappers around these
functions, which take every collaborator explicitly and can be tested without Celery.
They call the same stages as the foreground sync: the listing diff of
:mod:`tribrid.ingestion.plan`, :func:`~tribrid.ingestion.parse.parse_and_chunk`, and the
writer, failure recorder and removers of :mod:`tribrid.ingestion.write`.

How a background run goes:

1. :func:`queue_sync` lists the source through the same
   :class:`~tribrid.ingestion.plan.ListingDiff` as the foreground sync, marks the
   documents to (re-)index ``pending`` for the run in the ledger, hands their ids to
   ``enqueue`` in batches sized so the encoders get full batches across small files,
   and marks vanished documents deleted.
2. :func:`process_documents` re-reads each id's state, takes a **lease** on every pending
   document (a conditional ``UPDATE`` in the ledger, so two workers never process one
   document at once; a lease whose holder died is taken over), parses and chunks in
   this process, encodes the new chunks, and hands the encoded batch to a
   :class:`~tribrid.background.sinks.StoreSink`.
3. The sink commits the batch (:func:`~tribrid.background.sinks.apply_write`): points
   are upserted, then the ledger records the documents, then stale points are deleted,
   then the leases are released. Point ids are deterministic, so a batch committed twice
   (a crash, a redelivery) leaves exactly one copy of every point.

A file that kills its worker (a segfault, the OOM killer) leaves its parse attempt open
in the ledger (:meth:`~tribrid.ledger.base.RunQueue.begin_attempt`); after ``max_attempts``
such deaths the file is quarantined as failed with kind ``crashed``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy.exc import OperationalError as SqlOperationalError

from tribrid import logs, metrics
from tribrid.background.leases import abandon, call_owner, owner_is_dead
from tribrid.background.sinks import StoreSink
from tribrid.connectors.archives import (
    ArchiveLimits,
    ArchiveMember,
    MemberMissingError,
    member_digest,
    split_member_key,
)
from tribrid.connectors.base import Connector, SourceDocument, source_location
from tribrid.encoders import EncoderSet
from tribrid.errors import (
    ConfigError,
    EncoderError,
    LedgerError,
    ParseError,
    SchemaMismatchError,
    SourceBusyError,
    StoreError,
)
from tribrid.ingestion.base import DocumentFailure, FailureKind, ParsedDocument, unreadable
from tribrid.ingestion.parse import ParseJob, ParseOptions, parse_and_chunk
from tribrid.ingestion.plan import (
    ListingDiff,
    PlanAction,
    chunking_change,
    record_chunking,
    settle_unchanged,
)
from tribrid.ingestion.vector_cache import VectorCache
from tribrid.ingestion.write import encode_batch, record_failure, remove_vanished
from tribrid.ledger.base import (
    DocumentState,
    DocumentStatus,
    QueueLedger,
    RunCounts,
    RunProgress,
    WorkItem,
)

log = logging.getLogger(__name__)

# -- errors -------------------------------------------------------------------------------


def is_transient(error: BaseException) -> bool:
    """Whether retrying later may succeed: the store, the database or the broker was away.

    A schema mismatch is a store error that no retry fixes.
    """
    if isinstance(error, SchemaMismatchError):
        return False
    if isinstance(error, SourceBusyError):  # another sync of the source will end
        return True
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


# -- queueing a sync ------------------------------------------------------------------------


def queue_sync(
    connector: Connector,
    *,
    ledger: QueueLedger,
    run_id: int,
    sink: StoreSink,
    enqueue: Callable[[list[int]], None],
    batching: Batching | None = None,
    max_file_bytes: int | None = None,
    retry_failed: bool = False,
    archives: ArchiveLimits | None = ArchiveLimits(),  # noqa: B008 - frozen, shared
    chunking: Mapping[str, Any] | None = None,
) -> RunCounts:
    """List a source, queue what needs (re-)indexing, remove what vanished.

    Documents to parse become ``pending`` for ``run_id`` and their ids go to
    ``enqueue`` in batches (see :class:`Batching`). Unchanged documents cost nothing;
    files that fail before parsing (too large, unreadable, refused by the connector)
    are recorded at once. When the listing is done the run is marked listed, and
    completed if nothing was queued.

    Members of archives are queued as documents of their own (see
    :class:`~tribrid.ingestion.plan.ListingDiff`); ``archives`` are the limits of
    reading them (``None``: archives are plain files).

    ``chunking`` are the settings the workers cut with: a source cut with other ones
    fails the run with the reason and the fix (see
    :func:`~tribrid.ingestion.plan.chunking_change`); ``None`` checks nothing.

    Idempotent per run: a run that was listed already is not listed again.

    Returns:
        The counts of the listing (seen, unchanged, failed, deleted); the workers add
        indexed and failed documents to the run as they go.
    """
    progress = ledger.run_progress(run_id)
    if progress.listed or progress.finished:
        return RunCounts()  # a redelivered message: this run was listed already
    source_key = connector.source_key
    source_id = ledger.ensure_source(
        source_key, kind=source_key.split(":", 1)[0], location=source_location(connector)
    )
    with (
        logs.bind(run_id=run_id),
        ledger.hold_run(run_id) as ours,
        ledger.hold_source(source_id) as held,
    ):
        if not ours:
            return RunCounts()  # another copy of this message is listing this run right now
        if not held:
            # A foreground sync (or another listing) is at it: both would do all the work.
            ledger.fail_run(
                run_id,
                f"source {source_key} was being synced by another process (a `tribrid "
                "ingest`, a watcher or another listing) when this run was to list it; "
                "nothing was queued. Queue it again when that sync ends",
            )
            return RunCounts()
        if chunking is not None:
            reason = chunking_change(ledger, source_id, source_key, chunking)
            if reason:
                ledger.fail_run(run_id, reason)
                return RunCounts()
            record_chunking(ledger, source_id, chunking)
        return _list_and_queue(
            connector,
            ledger,
            source_id,
            run_id,
            sink,
            enqueue,
            batching or Batching(),
            max_file_bytes=max_file_bytes,
            retry_failed=retry_failed,
            archives=archives,
        )


def _list_and_queue(
    connector: Connector,
    ledger: QueueLedger,
    source_id: int,
    run_id: int,
    sink: StoreSink,
    enqueue: Callable[[list[int]], None],
    batching: Batching,
    *,
    max_file_bytes: int | None,
    retry_failed: bool,
    archives: ArchiveLimits | None,
) -> RunCounts:
    """The listing of :func:`queue_sync`, once the source is held."""
    source_key = connector.source_key
    diff = ListingDiff(
        connector,
        {s.key: s for s in ledger.document_states(source_id)},
        max_file_bytes=max_file_bytes,
        retry_failed=retry_failed,
        archives=archives,
    )
    counts = RunCounts()
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

    for item in diff:
        counts += RunCounts(seen=1)
        plan = item.plan
        if plan.action == PlanAction.PARSE:
            assert item.doc is not None
            batch.append(item.doc)
            estimated += batching.estimate(item.doc.size)
            if len(batch) >= batching.max_documents or estimated >= batching.max_chunks:
                flush()
        elif plan.action == PlanAction.FAIL:
            assert plan.kind is not None and plan.message is not None
            record_failure(
                ledger,
                sink.delete,
                source_id,
                item.key,
                kind=plan.kind,
                message=plan.message,
                size=item.doc.size if item.doc else 0,
                mtime_ns=item.doc.mtime_ns if item.doc else 0,
            )
            counts += RunCounts(failed=1)
        else:
            counts += settle_unchanged(ledger, item)
    flush()
    counts += remove_vanished(ledger, sink.delete, diff.vanished())
    ledger.add_run_counts(run_id, counts, listed=True)
    if ledger.complete_run_if_done(run_id):
        sink.run_completed(run_id, source_id, source_key)
    return counts


# -- the reaper ---------------------------------------------------------------------------


@dataclass
class ReapReport:
    """What one :func:`reap` did.

    Attributes:
        requeued: Documents queued again (taken from dead holders, or stranded).
        owners: The dead lease owners documents were taken from.
        stranded: Documents queued again because their messages were lost.
    """

    requeued: list[int] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    stranded: list[int] = field(default_factory=list)


def reap(
    ledger: QueueLedger,
    *,
    enqueue: Callable[[list[int]], None],
    batch_documents: int = 32,
    now: datetime | None = None,
    stranded_after_s: float | None = None,
) -> ReapReport:
    """Put back to work the documents whose worker died: the ledger heals the run.

    A worker killed as a whole (the OOM killer, a host crash) leaves its documents
    leased and its message unacknowledged in the broker, which redelivers it only after
    its visibility timeout (an hour on Redis by default, never on the filesystem broker).
    The reaper does not wait: a lease whose owner is a process of this host that no
    longer runs, or whose lease expired, is released and its documents are queued again.
    A later redelivery of the old message finds them done (or held) and skips them, so
    no document is processed twice.

    Args:
        ledger: The ledger.
        enqueue: Sends a ``process_documents`` task for a list of document ids.
        batch_documents: Documents per task queued.
        now: The time (UTC) to judge lease expiry by.
        stranded_after_s: Also queue again the documents of runs in which nothing has
            happened for this long while nobody holds them: their messages were lost (a
            broker restarted without keeping its queues). ``None`` leaves them waiting.
    """
    now = now or datetime.now(UTC)
    report = ReapReport()
    dead: dict[str, list[int]] = {}
    gone: dict[str, bool] = {}  # dead, rather than alive (or elsewhere) with its lease lapsed
    for item in ledger.leased_pending():
        owner = item.lease_owner
        assert owner is not None
        expired = item.lease_expires_at is not None and item.lease_expires_at < now
        if owner not in gone:
            gone[owner] = owner_is_dead(owner)
        if expired or gone[owner]:
            dead.setdefault(owner, []).append(item.id)
    for owner, ids in dead.items():
        ledger.release_leases(ids, owner)
        why = "which is gone" if gone[owner] else "whose lease expired"
        log.warning("%d document(s) held by %s, %s; queued again", len(ids), owner, why)
        report.owners.append(owner)
        _enqueue_in_batches(ids, enqueue, batch_documents, report)
    if stranded_after_s is not None:
        stranded = ledger.claim_stranded(stranded_after_s)
        if stranded:
            log.warning(
                "%d queued document(s) untouched for %.0f s with no worker holding them "
                "(their messages were lost, e.g. by a broker restart); queued again",
                len(stranded),
                stranded_after_s,
            )
            report.stranded.extend(stranded)
            _enqueue_in_batches(stranded, enqueue, batch_documents, report)
    return report


def _enqueue_in_batches(
    ids: list[int], enqueue: Callable[[list[int]], None], size: int, report: ReapReport
) -> None:
    for start in range(0, len(ids), size):
        part = ids[start : start + size]
        enqueue(part)
        report.requeued.extend(part)


def stall_reason(
    progress: RunProgress, *, now: datetime | None = None, quiet_s: float = 60.0
) -> str | None:
    """Why a running run is making no progress, or ``None`` while it is (or is over).

    Stalled: every document it has under way is held by a worker that died, or it has
    documents queued that no worker has taken for ``quiet_s`` seconds.
    """
    if progress.finished or progress.remaining == 0:
        return None
    now = now or datetime.now(UTC)
    owners = progress.lease_owners
    if owners:
        if not all(owner_is_dead(owner) for owner in owners):
            return None
        pids = ", ".join(sorted({o.split(":")[1] for o in owners if o.count(":") >= 1}))
        return (
            f"the worker(s) holding its {progress.in_progress} document(s) died (pid {pids}); "
            "a running `tribrid worker` queues them again within seconds: start one"
        )
    if progress.last_activity is None:
        return None
    idle = (now - progress.last_activity).total_seconds()
    if idle < quiet_s:
        return None
    return (
        f"{progress.queued} document(s) queued and none taken for {idle:.0f} s: no "
        "`tribrid worker` is taking work from this broker, or the broker lost the messages "
        "(a restart); a running worker queues them again after "
        f"TRIBRID_CELERY__STRANDED_AFTER_S, or start one"
    )


def run_snapshots(ledger: QueueLedger) -> list[metrics.RunSnapshot]:
    """The latest run of every source, as the metrics show it (queue depth, progress)."""
    snapshots = []
    for source in ledger.sources():
        if source.last_run is None:
            continue
        progress = ledger.run_progress(source.last_run.id)
        counts = progress.run.counts
        snapshots.append(
            metrics.RunSnapshot(
                source_key=source.key,
                run_id=progress.run.id,
                running=not progress.finished,
                listed=progress.listed,
                queued=progress.queued,
                in_progress=progress.in_progress,
                indexed=max(progress.indexed, counts.indexed),
                failed=max(progress.failed, counts.failed),
                deleted=max(progress.deleted, counts.deleted),
                unchanged=counts.unchanged,
            )
        )
    return snapshots


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
    """Where a document's bytes are, from its source's location (``local:<root>``).

    For a member of an archive (``a.zip!/dir/m.pdf``) that is the archive's file; see
    :func:`document_member` for the way in.
    """
    kind, _, root = item.source_location.partition(":")
    if kind != "local" or not root:
        raise ConfigError(
            f"source {item.source_key!r} at {item.source_location!r} is not a local folder; "
            "background workers read local folders only"
        )
    return Path(root) / split_member_key(item.key)[0]


def document_member(item: WorkItem) -> tuple[str, ...]:
    """The member names from the archive at :func:`document_path` down; empty for a file."""
    return split_member_key(item.key)[1]


def process_documents(
    document_ids: Sequence[int],
    *,
    ledger: QueueLedger,
    encoders: EncoderSet,
    sink: StoreSink,
    options: ParseOptions,
    owner: str | None = None,
    lease_s: float = 900.0,
    max_attempts: int = 3,
    parse: Callable[[ParseJob, ParseOptions], ParsedDocument | DocumentFailure] = parse_and_chunk,
    cache: VectorCache | None = None,
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
        cache: Vectors of texts encoded before (shared by the workers of a machine).

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
            with logs.bind(run_id=item.run_id, document_key=item.key):
                _process_one(
                    item, ledger, sink, options, max_attempts, parse, by_source, report, runs
                )
            ledger.renew_leases(sorted(held), owner, lease_s)
        finished = report.failed + report.deleted
        ledger.release_leases(finished, owner)
        held -= set(finished)
        for source_id, parsed in by_source.items():
            existing = {item.key: _state(item) for item, *_ in parsed}
            run_ids = {item.run_id for item, *_ in parsed}
            run_id = run_ids.pop() if len(run_ids) == 1 else None
            with logs.bind(run_id=run_id):
                batch = encode_batch(
                    ledger,
                    encoders,
                    source_id,
                    [(doc, digest, result) for _, doc, digest, result in parsed],
                    existing=existing,
                    cache=cache,
                )
                sink.commit(batch, owner=owner, run_id=run_id)
            committed = [item.id for item, *_ in parsed]
            held -= set(committed)
            report.committed += committed
    finally:
        if held:
            try:
                ledger.release_leases(sorted(held), owner)
            except Exception:
                # The ledger is away (the reason this call is failing, usually). Had the
                # call handed nothing to a sink, none of its leases guard work in flight:
                # let a retry in this process take them over instead of waiting for
                # them to expire. Otherwise they stay until the writer or expiry frees them.
                if not report.committed:
                    abandon(owner)
                raise
    for run_id, counts in runs.items():
        ledger.add_run_counts(run_id, counts)
        if ledger.complete_run_if_done(run_id):
            item = next(i for i in mine if i.run_id == run_id)
            sink.run_completed(run_id, item.source_id, item.source_key)
    return report


def _process_one(
    item: WorkItem,
    ledger: QueueLedger,
    sink: StoreSink,
    options: ParseOptions,
    max_attempts: int,
    parse: Callable[[ParseJob, ParseOptions], ParsedDocument | DocumentFailure],
    by_source: dict[int, list[tuple[WorkItem, SourceDocument, str, ParsedDocument]]],
    report: ProcessReport,
    runs: dict[int, RunCounts],
) -> None:
    """Parse one leased document: keep it for the batch, or record it failed or gone."""
    outcome = _parse_one(item, ledger, options, max_attempts, parse)
    if isinstance(outcome, tuple):
        by_source.setdefault(item.source_id, []).append((item, *outcome))
    elif outcome is None:
        gone = remove_vanished(ledger, sink.delete, [_state(item)])
        report.deleted.append(item.id)
        _count(runs, item, gone)
    else:
        doc, digest, failure = outcome.doc, outcome.digest, outcome.failure
        record_failure(
            ledger,
            sink.delete,
            item.source_id,
            item.key,
            kind=failure.kind,
            message=failure.message,
            size=doc.size if doc else 0,
            mtime_ns=doc.mtime_ns if doc else 0,
            content_hash=digest,
        )
        report.failed.append(item.id)
        _count(runs, item, RunCounts(failed=1))


@dataclass(frozen=True)
class _Failed:
    doc: SourceDocument | None
    digest: str | None
    failure: DocumentFailure


def _parse_one(
    item: WorkItem,
    ledger: QueueLedger,
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
        failure = unreadable(item.key, e)
        return _Failed(None, None, failure)
    member = document_member(item)
    doc: SourceDocument = SourceDocument(
        item.source_key, item.key, path, info.st_size, info.st_mtime_ns
    )
    if member:
        try:
            size, member_hash = member_digest(path, member, key=item.key, limits=options.archives)
        except MemberMissingError:
            return None  # the archive changed since it was listed: the member is gone
        except ParseError as error:
            failure = DocumentFailure(item.key, FailureKind(error.kind), str(error))
            return _Failed(doc, None, failure)
        except OSError as e:
            return _Failed(doc, None, unreadable(item.key, e))
        doc = ArchiveMember(
            item.source_key,
            item.key,
            path,
            size,
            info.st_mtime_ns,
            member=member,
            digest=member_hash,
        )
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
        failure = unreadable(item.key, e)
        return _Failed(doc, None, failure)
    ledger.begin_attempt(item.id)
    job = ParseJob(source_key=item.source_key, document_key=item.key, path=path, member=member)
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


def _quietly(delete: Callable[[Sequence[str]], None]) -> Callable[[Sequence[str]], None]:
    def attempt(point_ids: Sequence[str]) -> None:
        with contextlib.suppress(Exception):
            delete(point_ids)

    return attempt


def fail_documents(
    document_ids: Sequence[int],
    *,
    ledger: QueueLedger,
    sink: StoreSink,
    kind: str,
    message: str,
) -> list[int]:
    """Record the still-pending documents among ``document_ids`` as failed.

    Used when a task gives up (its retries are exhausted): the documents end failed with
    the reason, and a kind in :data:`~tribrid.ingestion.plan.RETRYABLE_FAILURES`
    makes the next sync try them again even if their files did not change.

    Returns:
        The ids recorded as failed.
    """
    failed: list[int] = []
    runs: dict[int, RunCounts] = {}
    items = [i for i in ledger.work_items(document_ids) if i.status == DocumentStatus.PENDING]
    for item in items:
        record_failure(
            ledger,
            _quietly(sink.delete),  # the store may be what is down
            item.source_id,
            item.key,
            kind=kind,
            message=message,
            size=item.size,
            mtime_ns=item.mtime_ns,
        )
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
    "ProcessReport",
    "ReapReport",
    "document_member",
    "document_path",
    "fail_documents",
    "failure_kind",
    "is_transient",
    "process_documents",
    "queue_sync",
    "reap",
    "run_snapshots",
    "stall_reason",
]
