"""Sync bookkeeping: sources, runs, documents and their chunks, in the SQL ledger.

This is the role the :class:`~tribrid.ledger.base.Ledger` protocol describes, the one
every sync needs. The background run queue
(:class:`~tribrid.ledger.runs.SqlRunQueue`) builds on the same tables and reuses the
row helpers here.

Write-ahead rule:
    To (re-)index a document, the caller

    1. upserts the document's new points to the store,
    2. calls :meth:`SqlBookkeeping.record_indexed`, which replaces the document's chunk
       rows in one transaction and returns the point ids it no longer owns,
    3. deletes those stale point ids from the store.

    The same holds for :meth:`SqlBookkeeping.record_failed` and
    :meth:`SqlBookkeeping.mark_deleted` (they skip step 1). A crash between steps
    leaves, at worst, orphan points that the ledger does not list (the next sync upserts
    them again under the same deterministic ids, and a reconcile can delete whatever the
    ledger does not know), or stale points the ledger still lists (the next sync of that
    document returns them again). Nothing is ever half-visible: the store never lacks a
    point the ledger lists as current for an indexed document.

Example:
    >>> from tribrid.ledger.database import Database
    >>> with SqlBookkeeping(Database("sqlite:////tmp/tribrid-doc/ledger.db")) as ledger:
    ...     source_id = ledger.ensure_source("docs", kind="local", location="/srv/docs")
    ...     run_id = ledger.start_run(source_id)
    ...     ledger.finish_run(run_id, RunCounts(seen=0))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from tribrid.errors import ConfigError, LedgerError
from tribrid.ledger.base import (
    ChunkRecord,
    DocumentState,
    DocumentStatus,
    IndexedDocument,
    RunCounts,
    RunRecord,
    RunStatus,
    SourceRecord,
    StatusReport,
)
from tribrid.ledger.database import Database, DatabaseRole, batches
from tribrid.ledger.models import ChunkRow, DocumentRow, RunRow, SourceRow, utcnow
from tribrid.ledger.summary import summarise

if TYPE_CHECKING:
    from tribrid.ledger.database import AnyRow

# Error messages come from parsers and can be whole tracebacks; keep the useful head.
_MAX_MESSAGE = 8000

_DOCUMENT_STATE_COLUMNS = (
    DocumentRow.id,
    DocumentRow.key,
    DocumentRow.size,
    DocumentRow.mtime_ns,
    DocumentRow.content_hash,
    DocumentRow.status,
    DocumentRow.error_kind,
    DocumentRow.chunk_count,
    DocumentRow.generation,
)


def truncate(message: str) -> str:
    """``message``, cut to the length the ledger keeps of an error."""
    if len(message) <= _MAX_MESSAGE:
        return message
    return message[:_MAX_MESSAGE] + " … (truncated)"


def to_run(run: RunRow, source_key: str) -> RunRecord:
    """The record of a run row."""
    return RunRecord(
        id=run.id,
        source_key=source_key,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status=RunStatus(run.status),
        counts=RunCounts(
            seen=run.seen,
            indexed=run.indexed,
            unchanged=run.unchanged,
            failed=run.failed,
            deleted=run.deleted,
            chunks_embedded=run.chunks_embedded,
            chunks_reused=run.chunks_reused,
            chunks_deleted=run.chunks_deleted,
        ),
        duration_s=run.duration_s,
        error=run.error,
    )


def _pending_row(
    source_id: int, key: str, *, path: str, size: int, mtime_ns: int, now: datetime
) -> dict[str, Any]:
    """The columns of a new document row, pending until it is recorded otherwise."""
    return {
        "source_id": source_id,
        "key": key,
        "path": path,
        "size": size,
        "mtime_ns": mtime_ns,
        "status": DocumentStatus.PENDING.value,
        "chunk_count": 0,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def lock_document(
    db: Database,
    session: Session,
    source_id: int,
    key: str,
    *,
    path: str,
    size: int,
    mtime_ns: int,
) -> DocumentRow:
    """Get the row of a document, created as pending if new, locked for this transaction."""
    row = _pending_row(source_id, key, path=path, size=size, mtime_ns=mtime_ns, now=utcnow())
    session.execute(db.insert_ignore(DocumentRow, row, ["source_id", "key"]))
    return session.execute(
        select(DocumentRow)
        .where(DocumentRow.source_id == source_id, DocumentRow.key == key)
        .with_for_update()
    ).scalar_one()


def lock_documents(
    db: Database, session: Session, source_id: int, documents: Sequence[IndexedDocument]
) -> list[DocumentRow]:
    """:func:`lock_document` for several documents: their rows, in their order."""
    now = utcnow()
    session.execute(
        db.insert_ignore(DocumentRow, None, ["source_id", "key"]),
        [
            _pending_row(
                source_id, doc.key, path=doc.path, size=doc.size, mtime_ns=doc.mtime_ns, now=now
            )
            for doc in documents
        ],
    )
    by_key: dict[str, DocumentRow] = {}
    for keys in batches([doc.key for doc in documents]):
        for row in session.execute(
            select(DocumentRow)
            .where(DocumentRow.source_id == source_id, DocumentRow.key.in_(keys))
            .order_by(DocumentRow.id)
            .with_for_update()
        ).scalars():
            by_key[row.key] = row
    return [by_key[doc.key] for doc in documents]


def chunks_by_document(session: Session, ids: Sequence[int]) -> dict[int, list[ChunkRecord]]:
    """The chunks of each document id (ordered by ``chunk_index``; [] for none), read in
    the caller's transaction, one query per IN-batch of ids."""
    found: dict[int, list[ChunkRecord]] = {document_id: [] for document_id in ids}
    for batch in batches(ids):
        rows = session.execute(
            select(
                ChunkRow.document_id,
                ChunkRow.point_id,
                ChunkRow.chunk_index,
                ChunkRow.content_hash,
            )
            .where(ChunkRow.document_id.in_(batch))
            .order_by(ChunkRow.document_id, ChunkRow.chunk_index, ChunkRow.point_id)
        )
        for document_id, point_id, chunk_index, chunk_hash in rows:
            found[document_id].append(ChunkRecord(point_id, chunk_index, chunk_hash))
    return found


def document_by_id(db: Database, session: Session, document_id: int) -> DocumentRow:
    """The row of a document, locked for this transaction.

    Raises:
        LedgerError: There is no such document.
    """
    row = session.get(DocumentRow, document_id, with_for_update=True)
    if row is None:
        raise LedgerError(
            f"ledger {db.url} has no document with id {document_id}; "
            "take ids from document_states() or get_document()"
        )
    return row


def _to_state(row: AnyRow) -> DocumentState:
    return DocumentState(
        id=row.id,
        key=row.key,
        size=row.size,
        mtime_ns=row.mtime_ns,
        content_hash=row.content_hash,
        status=DocumentStatus(row.status),
        error_kind=row.error_kind,
        chunk_count=row.chunk_count,
        generation=row.generation,
    )


def _drop_chunks(session: Session, document_id: int) -> list[str]:
    point_ids = list(
        session.scalars(
            select(ChunkRow.point_id)
            .where(ChunkRow.document_id == document_id)
            .order_by(ChunkRow.chunk_index, ChunkRow.point_id)
        )
    )
    if point_ids:
        session.execute(delete(ChunkRow).where(ChunkRow.document_id == document_id))
    return point_ids


def _count_chunks(session: Session, source_id: int | None) -> int:
    statement = select(func.count()).select_from(ChunkRow)
    if source_id is not None:
        statement = statement.join(DocumentRow).where(DocumentRow.source_id == source_id)
    return session.execute(statement).scalar_one()


class SqlBookkeeping(DatabaseRole):
    """What every sync records: sources, runs, documents and the point ids of their chunks.

    Implements :class:`~tribrid.ledger.base.Ledger`. Every method runs in its own
    transaction; see the module docstring for the write-ahead rule the callers follow.

    Args:
        db: The open database to record in.
    """

    def ensure_source(self, key: str, *, kind: str, location: str) -> int:
        """Create the source row if needed and return its id.

        Idempotent; a source that moved gets its new ``location`` recorded.

        Raises:
            ConfigError: A source with this key exists with another ``kind``.
        """
        if not key:
            raise ValueError("source key must not be empty")
        with self._db.write(f"record source {key!r}") as session:
            session.execute(
                self._db.insert_ignore(
                    SourceRow,
                    {"key": key, "kind": kind, "location": location, "created_at": utcnow()},
                    ["key"],
                )
            )
            row = session.execute(select(SourceRow).where(SourceRow.key == key)).scalar_one()
            if row.kind != kind:
                raise ConfigError(
                    f"source {key!r} is recorded in the ledger as kind {row.kind!r}, not "
                    f"{kind!r}; give this source another key"
                )
            if row.location != location:
                row.location = location
            return row.id

    def start_run(self, source_id: int) -> int:
        """Record the start of a sync run of a source and return the run's id."""
        with self._db.write(f"start a run of source {source_id}") as session:
            if session.get(SourceRow, source_id) is None:
                raise LedgerError(
                    f"ledger {self._db.url} has no source with id {source_id}; "
                    "call ensure_source() first"
                )
            run = RunRow(source_id=source_id, started_at=utcnow(), status=RunStatus.RUNNING.value)
            session.add(run)
            session.flush()
            return run.id

    def hold_source(self, source_id: int) -> AbstractContextManager[bool]:
        """While the block runs, claim the right to list and sync the source (no waiting).

        Yields whether this process got it. See :meth:`Database.exclusive`.
        """
        return self._db.exclusive(f"tribrid-sync-source-{source_id}")

    def hold_run(self, run_id: int) -> AbstractContextManager[bool]:
        """While the block runs, claim the right to list the run (no waiting)."""
        return self._db.exclusive(f"tribrid-list-run-{run_id}")

    def busy_runs(self, source_id: int, *, quiet_s: float = 900.0) -> list[RunRecord]:
        """Background runs of the source still at work on queued documents.

        At work: listed, running, with a queued document, and either a live lease on one
        of its documents or a document of it changed in the last ``quiet_s`` seconds.
        """
        now = utcnow()
        since = now - timedelta(seconds=quiet_s)
        pending = DocumentRow.status == DocumentStatus.PENDING.value
        with self._db.read(f"find the background runs of source {source_id}") as session:
            listed = select(RunRow.id).where(
                RunRow.source_id == source_id,
                RunRow.status == RunStatus.RUNNING.value,
                RunRow.listed_at.is_not(None),
            )
            ours = DocumentRow.run_id.in_(listed)
            queued = select(DocumentRow.run_id).where(ours, pending)
            held = select(DocumentRow.run_id).where(
                ours, pending, DocumentRow.lease_expires_at >= now
            )
            recent = select(DocumentRow.run_id).where(ours, DocumentRow.updated_at >= since)
            rows = session.execute(
                select(RunRow, SourceRow.key)
                .join(SourceRow)
                .where(
                    RunRow.id.in_(listed),
                    RunRow.id.in_(queued),
                    or_(RunRow.id.in_(held), RunRow.id.in_(recent), RunRow.listed_at >= since),
                )
                .order_by(RunRow.id)
            )
            return [to_run(run, key) for run, key in rows]

    def finish_run(
        self,
        run_id: int,
        counts: RunCounts,
        *,
        status: str = "completed",
        error: str | None = None,
    ) -> None:
        """Record the end of a run, its counts and duration. Calling it again overwrites.

        Args:
            run_id: Id from :meth:`start_run`.
            counts: What the run did.
            status: ``completed`` or ``failed``.
            error: Why the run failed, if it did.
        """
        finished = (RunStatus.COMPLETED.value, RunStatus.FAILED.value)
        if status not in finished:
            raise ValueError(f"run status must be one of {', '.join(finished)}, got {status!r}")
        with self._db.write(f"finish run {run_id}") as session:
            run = session.get(RunRow, run_id, with_for_update=True)
            if run is None:
                raise LedgerError(
                    f"ledger {self._db.url} has no run with id {run_id}; "
                    "use the id start_run() gave"
                )
            now = utcnow()
            run.finished_at = now
            run.duration_s = (now - run.started_at).total_seconds()
            run.status = RunStatus(status).value
            run.error = None if error is None else truncate(error)
            for name, value in counts.as_dict().items():
                setattr(run, name, value)

    def document_states(self, source_id: int) -> Iterator[DocumentState]:
        """Stream the state of every document of a source, deleted ones included, by key.

        Rows are fetched in batches; the iterator holds one connection until it is
        exhausted or closed, and sees the ledger as it was when iteration started.
        """
        statement = (
            select(*_DOCUMENT_STATE_COLUMNS)
            .where(DocumentRow.source_id == source_id)
            .order_by(DocumentRow.key)
        )
        return self._db.stream(statement, _to_state, f"list the documents of source {source_id}")

    def get_document(self, source_id: int, key: str) -> DocumentState | None:
        """The state of one document, or ``None`` if the ledger never saw it."""
        with self._db.read(f"read document {key!r}") as session:
            row = session.execute(
                select(*_DOCUMENT_STATE_COLUMNS).where(
                    DocumentRow.source_id == source_id, DocumentRow.key == key
                )
            ).one_or_none()
            return None if row is None else _to_state(row)

    def chunks_of(self, document_id: int) -> list[ChunkRecord]:
        """The chunks recorded for a document, ordered by ``chunk_index``."""
        return self.chunks_of_many([document_id])[document_id]

    def chunks_of_many(self, document_ids: Sequence[int]) -> dict[int, list[ChunkRecord]]:
        """The chunks of several documents, in one query per 900 ids.

        Returns:
            Every requested id mapped to its chunks ordered by ``chunk_index`` (an empty
            list for a document without chunks, or an unknown id).
        """
        with self._db.read("read chunks") as session:
            return chunks_by_document(session, list(dict.fromkeys(document_ids)))

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
        """Record a document as indexed with exactly ``chunks``, in one transaction.

        Creates the document row if needed (a deleted key that re-appears gets its old
        row back), clears any error, and replaces its chunk rows with ``chunks``.
        Call it after the new points are in the store (see the module's write-ahead rule).
        ``generation`` is the index generation they were written to; None keeps the one
        the row names (0 for a new row).

        Returns:
            The point ids the ledger held for this document that are not in ``chunks``,
            in their old chunk order: the stale points to delete from the store after
            this call.

        Raises:
            ValueError: Two chunks share a point id.
            LedgerError: The write failed (nothing was recorded).
        """
        document = IndexedDocument(
            key, path=path, size=size, mtime_ns=mtime_ns, content_hash=content_hash, chunks=chunks
        )
        return self.record_indexed_many(source_id, [document], generation=generation)[0]

    def record_indexed_many(
        self,
        source_id: int,
        documents: Sequence[IndexedDocument],
        *,
        generation: int | None = None,
    ) -> list[list[str]]:
        """:meth:`record_indexed` for several documents, in one transaction.

        A few statements for the whole batch (rows created, locked, their old chunks
        read, chunk rows deleted, inserted and updated in bulk) rather than a
        transaction of several statements per document: recording was a large part of
        what a sync did beside encoding.

        Returns:
            The stale point ids of each document, in the order of ``documents``.

        Raises:
            ValueError: A document lists a point id twice, or a key appears twice.
            LedgerError: The write failed (nothing was recorded).
        """
        if not documents:
            return []
        wanted: list[dict[str, ChunkRecord]] = []
        for doc in documents:
            new: dict[str, ChunkRecord] = {}
            for chunk in doc.chunks:
                if chunk.point_id in new:
                    raise ValueError(f"document {doc.key!r} lists point {chunk.point_id} twice")
                new[chunk.point_id] = chunk
            wanted.append(new)
        keys = [doc.key for doc in documents]
        if len(set(keys)) != len(keys):
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise ValueError(f"documents {twice} are listed twice in one batch")
        what = (
            f"record {keys[0]!r} as indexed"
            if len(keys) == 1
            else (f"record {len(keys)} documents as indexed ({keys[0]!r} ...)")
        )
        with self._db.write(what) as session:
            rows = lock_documents(self._db, session, source_id, documents)
            old = {
                document_id: {c.point_id: (c.chunk_index, c.content_hash) for c in chunks}
                for document_id, chunks in chunks_by_document(
                    session, [row.id for row in rows]
                ).items()
            }
            stale_of: list[list[str]] = []
            added: list[dict[str, Any]] = []
            moved: list[dict[str, Any]] = []
            now = utcnow()
            for doc, row, new in zip(documents, rows, wanted, strict=True):
                before = old[row.id]
                stale_of.append([point_id for point_id in before if point_id not in new])
                for c in new.values():
                    if c.point_id not in before:
                        added.append(
                            {
                                "point_id": c.point_id,
                                "document_id": row.id,
                                "chunk_index": c.chunk_index,
                                "content_hash": c.content_hash,
                            }
                        )
                    elif before[c.point_id] != (c.chunk_index, c.content_hash):
                        moved.append(
                            {
                                "point_id": c.point_id,
                                "chunk_index": c.chunk_index,
                                "content_hash": c.content_hash,
                            }
                        )
                row.path = doc.path
                row.size = doc.size
                row.mtime_ns = doc.mtime_ns
                row.content_hash = doc.content_hash
                row.status = DocumentStatus.INDEXED.value
                row.error_kind = None
                row.error_message = None
                row.chunk_count = len(new)
                if generation is not None:
                    row.generation = generation
                row.attempts = 0
                row.updated_at = now
                row.indexed_at = now
            for stale in batches([p for ids in stale_of for p in ids]):
                session.execute(delete(ChunkRow).where(ChunkRow.point_id.in_(stale)))
            if added:
                session.execute(insert(ChunkRow), added)
            if moved:
                session.execute(update(ChunkRow), moved)
            return stale_of

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
        """Record that a document could not be indexed, in one transaction.

        The document keeps no chunks: if it was indexed before, its content changed into
        something that cannot be indexed, so its old points are stale.

        Args:
            kind: Short machine-readable reason (a ``FailureKind`` value).
            message: What went wrong and what to do (long messages are truncated).
            content_hash: Hash of the document's content, if it could be read; lets the
                caller skip an unchanged document that failed before.

        Returns:
            The point ids the ledger held for the document, to delete from the store.
        """
        if not kind:
            raise ValueError(f"failure of {key!r} needs a kind")
        with self._db.write(f"record {key!r} as failed") as session:
            document = lock_document(
                self._db, session, source_id, key, path=path, size=size, mtime_ns=mtime_ns
            )
            stale = _drop_chunks(session, document.id)
            document.path = path
            document.size = size
            document.mtime_ns = mtime_ns
            document.content_hash = content_hash
            document.status = DocumentStatus.FAILED.value
            document.error_kind = str(kind)  # a FailureKind member is stored as its value
            document.error_message = truncate(message)
            document.chunk_count = 0
            document.attempts += 1
            document.updated_at = utcnow()
            return stale

    def record_unchanged(self, document_id: int, *, mtime_ns: int, size: int) -> None:
        """Record a new mtime and size for a document whose content did not change.

        Nothing else changes: status, hash and chunks stay as they are (a deleted
        document stays deleted; re-index it with :meth:`record_indexed` instead).
        """
        with self._db.write(f"touch document {document_id}") as session:
            document = document_by_id(self._db, session, document_id)
            if document.mtime_ns != mtime_ns or document.size != size:
                document.mtime_ns = mtime_ns
                document.size = size
                document.updated_at = utcnow()

    def mark_deleted(self, document_id: int) -> list[str]:
        """Record that a document is gone from its source, in one transaction.

        The row stays (status ``deleted``, no hash, no error, no chunks) so that the key
        gets it back if the document re-appears. Idempotent.

        Returns:
            The point ids the ledger held for the document, to delete from the store.
        """
        with self._db.write(f"mark document {document_id} deleted") as session:
            document = document_by_id(self._db, session, document_id)
            stale = _drop_chunks(session, document.id)
            if document.status != DocumentStatus.DELETED.value:
                document.status = DocumentStatus.DELETED.value
                document.content_hash = None
                document.error_kind = None
                document.error_message = None
                document.chunk_count = 0
                document.attempts = 0
                document.updated_at = utcnow()
            return stale

    def all_point_ids(self, source_id: int | None = None) -> Iterator[str]:
        """Stream every point id recorded, for one source or all, in point id order."""
        statement = select(ChunkRow.point_id).order_by(ChunkRow.point_id)
        if source_id is not None:
            statement = statement.join(DocumentRow).where(DocumentRow.source_id == source_id)
        return self._db.stream(statement, lambda row: str(row[0]), "list point ids")

    def count_chunks(self, source_id: int | None = None) -> int:
        """Number of chunks (points) recorded, for one source or all."""
        with self._db.read("count chunks") as session:
            return _count_chunks(session, source_id)

    def status(
        self, source_key: str | None = None, *, max_failures: int | None = 100
    ) -> StatusReport:
        """Summarise the ledger, for one source or all, from one consistent snapshot.

        Args:
            source_key: Only this source; an unknown key gives an empty report whose
                ``sources`` is empty.
            max_failures: Cap on the failures listed, newest first (``None``: all).
                ``counts["failed"]`` always has the total.
        """
        with self._db.read("summarise the ledger") as session:

            def execute(sql: str, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
                return session.execute(text(sql), dict(params)).all()

            return summarise(execute, source_key, max_failures=max_failures)

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The most recent runs of every source, newest first."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        with self._db.read("list runs") as session:
            rows = session.execute(
                select(RunRow, SourceRow.key)
                .join(SourceRow)
                .order_by(RunRow.started_at.desc(), RunRow.id.desc())
                .limit(limit)
            )
            return [to_run(run, key) for run, key in rows]

    def sources(self) -> list[SourceRecord]:
        """Every source, by key, each with its most recently started run and its counts."""
        with self._db.read("list sources") as session:
            documents: dict[int, int] = {
                source_id: count
                for source_id, count in session.execute(
                    select(DocumentRow.source_id, func.count())
                    .where(DocumentRow.status != DocumentStatus.DELETED.value)
                    .group_by(DocumentRow.source_id)
                )
            }
            chunks: dict[int, int] = {
                source_id: count
                for source_id, count in session.execute(
                    select(DocumentRow.source_id, func.count())
                    .select_from(ChunkRow)
                    .join(DocumentRow)
                    .group_by(DocumentRow.source_id)
                )
            }
            return [
                self._record(session, source, documents.get(source.id, 0), chunks.get(source.id, 0))
                for source in session.execute(select(SourceRow).order_by(SourceRow.key)).scalars()
            ]

    @staticmethod
    def _record(session: Session, source: SourceRow, documents: int, chunks: int) -> SourceRecord:
        run = session.execute(
            select(RunRow)
            .where(RunRow.source_id == source.id)
            .order_by(RunRow.started_at.desc(), RunRow.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        return SourceRecord(
            id=source.id,
            key=source.key,
            kind=source.kind,
            location=source.location,
            last_run=None if run is None else to_run(run, source.key),
            name=source.name,
            documents=documents,
            chunks=chunks,
        )

    def find_source(self, name_or_key: str) -> SourceRecord | None:
        """The source named ``name_or_key``, or else the one with that key; None if none."""
        with self._db.read(f"find source {name_or_key!r}") as session:
            source = session.execute(
                select(SourceRow).where(SourceRow.name == name_or_key)
            ).scalar_one_or_none()
            if source is None:
                source = session.execute(
                    select(SourceRow).where(SourceRow.key == name_or_key)
                ).scalar_one_or_none()
            if source is None:
                return None
            documents = session.execute(
                select(func.count()).where(
                    DocumentRow.source_id == source.id,
                    DocumentRow.status != DocumentStatus.DELETED.value,
                )
            ).scalar_one()
            return self._record(session, source, documents, _count_chunks(session, source.id))

    def name_source(self, source_id: int, name: str | None) -> None:
        """Give a source a name, or take its name away (``None``).

        The key does not change, so neither do the ids of its points: naming or
        renaming a source re-embeds nothing.

        Raises:
            ConfigError: Another source has this name.
            LedgerError: There is no such source.
        """
        if name is not None and not name.strip():
            raise ValueError("a source name must not be empty")
        with self._db.write(f"name source {source_id} {name!r}") as session:
            source = session.get(SourceRow, source_id, with_for_update=True)
            if source is None:
                raise LedgerError(f"ledger {self._db.url} has no source with id {source_id}")
            if name is not None:
                other = session.execute(
                    select(SourceRow).where(SourceRow.name == name, SourceRow.id != source_id)
                ).scalar_one_or_none()
                if other is not None:
                    raise ConfigError(
                        f"source name {name!r} is taken by the source at {other.location} "
                        f"(key {other.key!r}); choose another name, or rename that one first "
                        "(`tribrid sources rename`)"
                    )
            source.name = name

    def remove_source(self, source_id: int) -> list[str]:
        """Forget a source: its documents, their chunks and its runs, in one transaction.

        Returns:
            The point ids it had, to delete from the store after this call.
        """
        with self._db.write(f"remove source {source_id}") as session:
            source = session.get(SourceRow, source_id, with_for_update=True)
            if source is None:
                raise LedgerError(f"ledger {self._db.url} has no source with id {source_id}")
            point_ids = list(
                session.scalars(
                    select(ChunkRow.point_id)
                    .join(DocumentRow)
                    .where(DocumentRow.source_id == source_id)
                    .order_by(ChunkRow.point_id)
                )
            )
            document_ids = select(DocumentRow.id).where(DocumentRow.source_id == source_id)
            session.execute(delete(ChunkRow).where(ChunkRow.document_id.in_(document_ids)))
            session.execute(delete(DocumentRow).where(DocumentRow.source_id == source_id))
            session.execute(delete(RunRow).where(RunRow.source_id == source_id))
            session.delete(source)
            return point_ids

    def source_chunking(self, source_id: int) -> str | None:
        """The chunking record of the source's last complete sync; None before one."""
        with self._db.read(f"read the chunking of source {source_id}") as session:
            return session.execute(
                select(SourceRow.chunking).where(SourceRow.id == source_id)
            ).scalar_one_or_none()

    def record_chunking(self, source_id: int, chunking: str) -> None:
        """Record the chunking the source's documents are cut with."""
        with self._db.write(f"record the chunking of source {source_id}") as session:
            source = session.get(SourceRow, source_id)
            if source is None:
                raise LedgerError(f"ledger {self._db.url} has no source with id {source_id}")
            source.chunking = chunking


__all__ = ["SqlBookkeeping"]
