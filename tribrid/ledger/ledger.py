"""The SQL ledger: SQLite by default, PostgreSQL by URL, schema managed by Alembic.

The ledger is the source of truth of what is indexed; the vector store is derived
from it. Every document of every source has one row (deleted documents included, so a
key that re-appears reuses its row), and every point in the store has one chunk row.

Write-ahead rule:
    To (re-)index a document, the caller

    1. upserts the document's new points to the store,
    2. calls :meth:`SqlLedger.record_indexed`, which replaces the document's chunk rows
       in one transaction and returns the point ids it no longer owns,
    3. deletes those stale point ids from the store.

    The same holds for :meth:`SqlLedger.record_failed` and :meth:`SqlLedger.mark_deleted`
    (they skip step 1). A crash between steps leaves, at worst, orphan points that the
    ledger does not list (the next sync upserts them again under the same deterministic
    ids, and a reconcile can delete whatever the ledger does not know), or stale
    points the ledger still lists (the next sync of that document returns them again).
    Nothing is ever half-visible: the store never lacks a point the ledger lists as
    current for an indexed document.

Example:
    >>> ledger = SqlLedger("sqlite:////tmp/tribrid-doc/ledger.db")
    >>> source_id = ledger.ensure_source("docs", kind="local", location="/srv/docs")
    >>> run_id = ledger.start_run(source_id)
    >>> ledger.finish_run(run_id, RunCounts(seen=0))
    >>> ledger.close()
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Row,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from tribrid.errors import ConfigError, LedgerError
from tribrid.ledger.base import (
    ChunkRecord,
    DocumentState,
    DocumentStatus,
    FailureRecord,
    RunCounts,
    RunProgress,
    RunRecord,
    RunStatus,
    SourceRecord,
    StatusReport,
    WorkItem,
)
from tribrid.ledger.models import ChunkRow, DocumentRow, RunRow, SourceRow, utcnow

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_T = TypeVar("_T")

if TYPE_CHECKING:
    _AnyRow: TypeAlias = Row[*tuple[Any, ...]]

_STREAM_BATCH = 1000
# Bound on ids per IN (...) clause: far below SQLite's and PostgreSQL's parameter limits.
_IN_BATCH = 900
# Error messages come from parsers and can be whole tracebacks; keep the useful head.
_MAX_MESSAGE = 8000
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_PG_CONNECT_TIMEOUT_S = 10
# Serialises concurrent migrations of one PostgreSQL database (any constant will do).
_PG_MIGRATION_LOCK = 0x7472_6962  # "trib"
# Execution option that marks a connection as a writer, so SQLite takes its write
# lock at BEGIN instead of failing to upgrade a read lock later.
_WRITER = "tribrid_writer"
_ENV_HINT = "or set TRIBRID_DATABASE__URL to another ledger"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for the ledger migrations, built in code (no alembic.ini).

    Args:
        url: Database to migrate when no connection is shared through
            ``config.attributes["connection"]`` (for writing new revisions).

    Returns:
        A config whose ``script_location`` is the migrations folder of the package.
    """
    cfg = Config()
    # ConfigParser interpolates '%'; a path containing one must be escaped.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def _truncate(message: str) -> str:
    if len(message) <= _MAX_MESSAGE:
        return message
    return message[:_MAX_MESSAGE] + " … (truncated)"


def _to_state(row: _AnyRow) -> DocumentState:
    return DocumentState(
        id=row.id,
        key=row.key,
        size=row.size,
        mtime_ns=row.mtime_ns,
        content_hash=row.content_hash,
        status=DocumentStatus(row.status),
        error_kind=row.error_kind,
        chunk_count=row.chunk_count,
    )


def _to_run(run: RunRow, source_key: str) -> RunRecord:
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


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched (``CursorResult.rowcount``)."""
    return int(result.rowcount)


def _batches(items: Sequence[_T], size: int = _IN_BATCH) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_DOCUMENT_STATE_COLUMNS = (
    DocumentRow.id,
    DocumentRow.key,
    DocumentRow.size,
    DocumentRow.mtime_ns,
    DocumentRow.content_hash,
    DocumentRow.status,
    DocumentRow.error_kind,
    DocumentRow.chunk_count,
)


class SqlLedger:
    """The ledger on SQLite (default) or PostgreSQL, migrated to the current schema on open.

    Every method runs in its own transaction and is safe to call from several threads.
    Streaming methods hold one pooled connection until their iterator is exhausted or
    closed. Errors from the database are raised as :class:`~tribrid.errors.LedgerError`
    naming the ledger and what to do.

    Open one ledger per process: pooled connections must not cross a ``fork`` (a
    prefork worker opens its own after it starts). Several processes may share one
    database; on SQLite, WAL mode lets readers run beside the one writer, and writers
    wait up to 30 s for each other.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path/ledger.db`` or
            ``postgresql+psycopg://user@host:5432/db`` (``postgresql://`` means psycopg 3).
        echo: Log every SQL statement (for debugging).

    Raises:
        LedgerError: The database cannot be opened or migrated; the message names it
            (password masked) and the fix.

    Example:
        >>> with SqlLedger("sqlite:////tmp/tribrid-doc/ledger.db") as ledger:
        ...     source_id = ledger.ensure_source("docs", kind="local", location="/srv/docs")
        ...     ledger.status("docs").counts["indexed"]
        0
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self._closed = False
        parsed = self._parse_url(url)
        self._url = parsed.render_as_string(hide_password=True)
        self._is_sqlite = parsed.get_backend_name() == "sqlite"
        self._fix = self._fix_hint(parsed)
        if self._is_sqlite:
            self._prepare_sqlite_file(parsed)
        try:
            self._engine = self._create_engine(parsed, echo=echo)
        except (SQLAlchemyError, ImportError) as e:
            raise LedgerError(
                f"cannot open the ledger at {self._url}: {e}; install the database driver "
                f"(psycopg 3 for PostgreSQL) {_ENV_HINT}"
            ) from e
        self._read_session = sessionmaker(self._engine, expire_on_commit=False)
        self._write_engine = self._engine.execution_options(**{_WRITER: True})
        self._write_session = sessionmaker(self._write_engine, expire_on_commit=False)
        try:
            self._migrate()
        except BaseException:
            self._engine.dispose()
            raise

    # -- opening --------------------------------------------------------------------

    @staticmethod
    def _parse_url(url: str) -> URL:
        try:
            parsed = make_url(url)
        except ArgumentError as e:
            raise LedgerError(
                f"ledger URL {url!r} is not a database URL; use sqlite:///path/ledger.db "
                "or postgresql+psycopg://user@host:5432/db"
            ) from e
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise LedgerError(
                f"ledger URL {parsed.render_as_string(hide_password=True)} uses {backend!r}; "
                "the ledger supports sqlite and postgresql (psycopg 3)"
            )
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed

    @staticmethod
    def _fix_hint(url: URL) -> str:
        if url.get_backend_name() == "sqlite":
            folder = Path(url.database or ".").expanduser().parent
            return (
                f"check that the folder {folder} exists and is writable and that the file "
                f"is a SQLite database, {_ENV_HINT}"
            )
        where = f"{url.host or 'localhost'}:{url.port or 5432}"
        return (
            f"check that PostgreSQL is running at {where}, that the database "
            f"{url.database!r} exists (createdb {url.database}) and that the user may "
            f"connect, {_ENV_HINT}"
        )

    def _prepare_sqlite_file(self, url: URL) -> None:
        database = url.database or ""
        uri = str(url.query.get("uri", "")).lower() in ("true", "1")
        if database in ("", ":memory:") or (uri and "mode=memory" in database):
            raise LedgerError(
                f"in-memory SQLite ({self._url}) cannot hold the ledger: it streams reads "
                "while it writes, which needs a file; use sqlite:///path/ledger.db "
                "(a temporary folder in tests)"
            )
        if uri:
            return
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            reason = "a file is in the way" if folder.exists() else (e.strerror or str(e))
            raise LedgerError(
                f"cannot create the folder {folder} of the ledger {self._url}: {reason}; "
                f"{self._fix}"
            ) from e

    def _create_engine(self, url: URL, *, echo: bool) -> Engine:
        if not self._is_sqlite:
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in url.query:
                connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
            return create_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect_args)

        engine = create_engine(url, echo=echo)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
            # Take BEGIN away from the sqlite3 module (it skips it before SELECT and DDL)
            # and emit it ourselves in _on_begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
                cursor.execute("PRAGMA foreign_keys = ON")
                cursor.execute("PRAGMA journal_mode = WAL")
                # NORMAL is durable across application crashes in WAL mode.
                cursor.execute("PRAGMA synchronous = NORMAL")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            writer = connection.get_execution_options().get(_WRITER, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine

    def _migrate(self) -> None:
        cfg = alembic_config()
        try:
            with self._write_engine.begin() as connection:
                if not self._is_sqlite:
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                    )
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
        except CommandError as e:
            raise LedgerError(
                f"cannot migrate the ledger at {self._url} to this tribrid's schema: {e}; "
                "if a newer tribrid wrote it, upgrade tribrid, otherwise use a fresh database "
                f"({_ENV_HINT})"
            ) from e
        except (SQLAlchemyError, sqlite3.Error, OSError) as e:
            raise LedgerError(
                f"cannot open the ledger at {self._url}: {self._reason(e)}; {self._fix}"
            ) from e

    # -- plumbing -------------------------------------------------------------------

    @staticmethod
    def _reason(error: BaseException) -> str:
        orig = getattr(error, "orig", None)
        return str(orig if orig is not None else error).strip().splitlines()[0]

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerError(f"the ledger at {self._url} is closed; open a new SqlLedger")

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as e:
            raise LedgerError(
                f"ledger {self._url}: could not {action}: {self._reason(e)}; {self._fix}"
            ) from e

    @contextmanager
    def _write(self, action: str) -> Iterator[Session]:
        self._check_open()
        with self._guard(action), self._write_session.begin() as session:
            yield session

    @contextmanager
    def _read(self, action: str) -> Iterator[Session]:
        self._check_open()
        with self._guard(action), self._read_session() as session:
            yield session

    def _stream(
        self, statement: Executable, convert: Callable[[_AnyRow], _T], action: str
    ) -> Iterator[_T]:
        self._check_open()
        with self._guard(action), self._engine.connect() as connection:
            result = connection.execution_options(yield_per=_STREAM_BATCH).execute(statement)
            try:
                for row in result:
                    yield convert(row)
            finally:
                # Closes a PostgreSQL server-side cursor even when the caller stops early.
                result.close()

    def _insert_ignore(
        self, entity: type[Any], values: dict[str, Any], keys: list[str]
    ) -> Executable:
        """INSERT that does nothing when a row with the same ``keys`` exists."""
        if self._is_sqlite:
            return (
                sqlite_insert(entity).values(**values).on_conflict_do_nothing(index_elements=keys)
            )
        return (
            postgresql_insert(entity).values(**values).on_conflict_do_nothing(index_elements=keys)
        )

    def _lock_document(
        self, session: Session, source_id: int, key: str, *, path: str, size: int, mtime_ns: int
    ) -> DocumentRow:
        """Get the row of a document, created as pending if new, locked for this transaction."""
        now = utcnow()
        session.execute(
            self._insert_ignore(
                DocumentRow,
                {
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
                },
                ["source_id", "key"],
            )
        )
        return session.execute(
            select(DocumentRow)
            .where(DocumentRow.source_id == source_id, DocumentRow.key == key)
            .with_for_update()
        ).scalar_one()

    def _document_by_id(self, session: Session, document_id: int) -> DocumentRow:
        row = session.get(DocumentRow, document_id, with_for_update=True)
        if row is None:
            raise LedgerError(
                f"ledger {self._url} has no document with id {document_id}; "
                "take ids from document_states() or get_document()"
            )
        return row

    @staticmethod
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

    # -- public API -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The ledger's URL, password masked."""
        return self._url

    def close(self) -> None:
        """Close every pooled connection. The ledger cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> SqlLedger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqlLedger({self._url!r})"

    def ensure_source(self, key: str, *, kind: str, location: str) -> int:
        """Create the source row if needed and return its id.

        Idempotent; a source that moved gets its new ``location`` recorded.

        Raises:
            ConfigError: A source with this key exists with another ``kind``.
        """
        if not key:
            raise ValueError("source key must not be empty")
        with self._write(f"record source {key!r}") as session:
            session.execute(
                self._insert_ignore(
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
        with self._write(f"start a run of source {source_id}") as session:
            if session.get(SourceRow, source_id) is None:
                raise LedgerError(
                    f"ledger {self._url} has no source with id {source_id}; "
                    "call ensure_source() first"
                )
            run = RunRow(source_id=source_id, started_at=utcnow(), status=RunStatus.RUNNING.value)
            session.add(run)
            session.flush()
            return run.id

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
        with self._write(f"finish run {run_id}") as session:
            run = session.get(RunRow, run_id, with_for_update=True)
            if run is None:
                raise LedgerError(
                    f"ledger {self._url} has no run with id {run_id}; use the id start_run() gave"
                )
            now = utcnow()
            run.finished_at = now
            run.duration_s = (now - run.started_at).total_seconds()
            run.status = RunStatus(status).value
            run.error = None if error is None else _truncate(error)
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
        return self._stream(statement, _to_state, f"list the documents of source {source_id}")

    def get_document(self, source_id: int, key: str) -> DocumentState | None:
        """The state of one document, or ``None`` if the ledger never saw it."""
        with self._read(f"read document {key!r}") as session:
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
        ids = list(dict.fromkeys(document_ids))
        found: dict[int, list[ChunkRecord]] = {document_id: [] for document_id in ids}
        with self._read("read chunks") as session:
            for batch in _batches(ids):
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
    ) -> list[str]:
        """Record a document as indexed with exactly ``chunks``, in one transaction.

        Creates the document row if needed (a deleted key that re-appears gets its old
        row back), clears any error, and replaces its chunk rows with ``chunks``.
        Call it after the new points are in the store (see the module's write-ahead rule).

        Returns:
            The point ids the ledger held for this document that are not in ``chunks``,
            in their old chunk order: the stale points to delete from the store after
            this call.

        Raises:
            ValueError: Two chunks share a point id.
            LedgerError: The write failed (nothing was recorded).
        """
        new: dict[str, ChunkRecord] = {}
        for chunk in chunks:
            if chunk.point_id in new:
                raise ValueError(f"document {key!r} lists point {chunk.point_id} twice")
            new[chunk.point_id] = chunk
        with self._write(f"record {key!r} as indexed") as session:
            document = self._lock_document(
                session, source_id, key, path=path, size=size, mtime_ns=mtime_ns
            )
            old = {
                point_id: (chunk_index, chunk_hash)
                for point_id, chunk_index, chunk_hash in session.execute(
                    select(ChunkRow.point_id, ChunkRow.chunk_index, ChunkRow.content_hash)
                    .where(ChunkRow.document_id == document.id)
                    .order_by(ChunkRow.chunk_index, ChunkRow.point_id)
                )
            }
            stale = [point_id for point_id in old if point_id not in new]
            for batch in _batches(stale):
                session.execute(delete(ChunkRow).where(ChunkRow.point_id.in_(batch)))
            added = [
                {
                    "point_id": c.point_id,
                    "document_id": document.id,
                    "chunk_index": c.chunk_index,
                    "content_hash": c.content_hash,
                }
                for c in new.values()
                if c.point_id not in old
            ]
            if added:
                session.execute(insert(ChunkRow), added)
            moved = [
                {
                    "point_id": c.point_id,
                    "chunk_index": c.chunk_index,
                    "content_hash": c.content_hash,
                }
                for c in new.values()
                if c.point_id in old and old[c.point_id] != (c.chunk_index, c.content_hash)
            ]
            if moved:
                session.execute(update(ChunkRow), moved)
            now = utcnow()
            document.path = path
            document.size = size
            document.mtime_ns = mtime_ns
            document.content_hash = content_hash
            document.status = DocumentStatus.INDEXED.value
            document.error_kind = None
            document.error_message = None
            document.chunk_count = len(new)
            document.attempts = 0
            document.updated_at = now
            document.indexed_at = now
            return stale

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
            content_hash: Hash of the file's bytes, if it could be read; lets the caller
                skip an unchanged file that failed before.

        Returns:
            The point ids the ledger held for the document, to delete from the store.
        """
        if not kind:
            raise ValueError(f"failure of {key!r} needs a kind")
        with self._write(f"record {key!r} as failed") as session:
            document = self._lock_document(
                session, source_id, key, path=path, size=size, mtime_ns=mtime_ns
            )
            stale = self._drop_chunks(session, document.id)
            document.path = path
            document.size = size
            document.mtime_ns = mtime_ns
            document.content_hash = content_hash
            document.status = DocumentStatus.FAILED.value
            document.error_kind = str(kind)  # a FailureKind member is stored as its value
            document.error_message = _truncate(message)
            document.chunk_count = 0
            document.attempts += 1
            document.updated_at = utcnow()
            return stale

    def record_unchanged(self, document_id: int, *, mtime_ns: int, size: int) -> None:
        """Record a new mtime and size for a document whose content did not change.

        Nothing else changes: status, hash and chunks stay as they are (a deleted
        document stays deleted; re-index it with :meth:`record_indexed` instead).
        """
        with self._write(f"touch document {document_id}") as session:
            document = self._document_by_id(session, document_id)
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
        with self._write(f"mark document {document_id} deleted") as session:
            document = self._document_by_id(session, document_id)
            stale = self._drop_chunks(session, document.id)
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
        return self._stream(statement, lambda row: str(row[0]), "list point ids")

    def count_chunks(self, source_id: int | None = None) -> int:
        """Number of chunks (points) recorded, for one source or all."""
        with self._read("count chunks") as session:
            return self._count_chunks(session, source_id)

    @staticmethod
    def _count_chunks(session: Session, source_id: int | None) -> int:
        statement = select(func.count()).select_from(ChunkRow)
        if source_id is not None:
            statement = statement.join(DocumentRow).where(DocumentRow.source_id == source_id)
        return session.execute(statement).scalar_one()

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
        counts = {status.value: 0 for status in DocumentStatus}
        with self._read("summarise the ledger") as session:
            sources = session.execute(
                select(SourceRow.id, SourceRow.key).order_by(SourceRow.key)
            ).all()
            if source_key is not None:
                sources = [row for row in sources if row.key == source_key]
                if not sources:
                    return StatusReport(counts=counts, chunks=0)
            source_id = sources[0].id if source_key is not None else None

            by_status = select(DocumentRow.status, func.count()).group_by(DocumentRow.status)
            failures = (
                select(DocumentRow, SourceRow.key)
                .join(SourceRow)
                .where(DocumentRow.status == DocumentStatus.FAILED.value)
                .order_by(DocumentRow.updated_at.desc(), DocumentRow.id.desc())
                .limit(max_failures)
            )
            last_run = (
                select(RunRow, SourceRow.key)
                .join(SourceRow)
                .order_by(RunRow.started_at.desc(), RunRow.id.desc())
                .limit(1)
            )
            if source_id is not None:
                by_status = by_status.where(DocumentRow.source_id == source_id)
                failures = failures.where(DocumentRow.source_id == source_id)
                last_run = last_run.where(RunRow.source_id == source_id)

            for status, count in session.execute(by_status):
                counts[status] = count
            failure_records = [
                FailureRecord(
                    source_key=key,
                    key=document.key,
                    path=document.path,
                    error_kind=document.error_kind,
                    error_message=document.error_message,
                    updated_at=document.updated_at,
                )
                for document, key in session.execute(failures)
            ]
            run = session.execute(last_run).one_or_none()
            return StatusReport(
                counts=counts,
                chunks=self._count_chunks(session, source_id),
                failures=failure_records,
                last_run=None if run is None else _to_run(*run),
                sources=[row.key for row in sources],
            )

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The most recent runs of every source, newest first."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        with self._read("list runs") as session:
            rows = session.execute(
                select(RunRow, SourceRow.key)
                .join(SourceRow)
                .order_by(RunRow.started_at.desc(), RunRow.id.desc())
                .limit(limit)
            )
            return [_to_run(run, key) for run, key in rows]

    def sources(self) -> list[SourceRecord]:
        """Every source, by key, each with its most recently started run."""
        with self._read("list sources") as session:
            found = []
            for source in session.execute(select(SourceRow).order_by(SourceRow.key)).scalars():
                run = session.execute(
                    select(RunRow)
                    .where(RunRow.source_id == source.id)
                    .order_by(RunRow.started_at.desc(), RunRow.id.desc())
                    .limit(1)
                ).scalar_one_or_none()
                found.append(
                    SourceRecord(
                        id=source.id,
                        key=source.key,
                        kind=source.kind,
                        location=source.location,
                        last_run=None if run is None else _to_run(run, source.key),
                    )
                )
            return found

    # -- background runs: queueing, leases, progress --------------------------------

    def queue_documents(
        self, source_id: int, run_id: int, documents: Sequence[tuple[str, str, int, int]]
    ) -> list[int]:
        """Mark documents as work to do for ``run_id``, in one transaction.

        A new document gets a ``pending`` row; a known one becomes ``pending`` and keeps
        its chunks (its points stay searchable until a worker replaces them) and what was
        recorded of its file until a worker records what it parsed.

        A document that ``run_id`` queued already and that is no longer pending (a worker
        indexed it, or recorded it failed or deleted) is left alone: a listing delivered
        twice, the second copy running while workers already finish the first one's
        documents, must not send them round again.

        Args:
            documents: ``(key, path, size, mtime_ns)`` of every document to queue.

        Returns:
            The row ids of the documents now pending for the run, in the order given.
        """
        ids: list[int] = []
        with self._write(f"queue {len(documents)} documents for run {run_id}") as session:
            for key, path, size, mtime_ns in documents:
                document = self._lock_document(
                    session, source_id, key, path=path, size=size, mtime_ns=mtime_ns
                )
                if document.run_id == run_id and document.status != DocumentStatus.PENDING:
                    continue  # this run has finished it already
                document.status = DocumentStatus.PENDING.value
                document.run_id = run_id
                document.updated_at = utcnow()
                ids.append(document.id)
        return ids

    def work_items(self, document_ids: Sequence[int]) -> list[WorkItem]:
        """The current state of documents, for a task that was handed their ids.

        Unknown ids are left out; the rest come back in the order given.
        """
        found: dict[int, WorkItem] = {}
        with self._read("read documents to work on") as session:
            for batch in _batches(list(dict.fromkeys(document_ids))):
                rows = session.execute(
                    select(DocumentRow, SourceRow.key, SourceRow.location)
                    .join(SourceRow)
                    .where(DocumentRow.id.in_(batch))
                )
                for document, source_key, location in rows:
                    found[document.id] = WorkItem(
                        id=document.id,
                        source_id=document.source_id,
                        source_key=source_key,
                        source_location=location,
                        key=document.key,
                        path=document.path,
                        status=DocumentStatus(document.status),
                        size=document.size,
                        mtime_ns=document.mtime_ns,
                        run_id=document.run_id,
                        lease_owner=document.lease_owner,
                        lease_expires_at=document.lease_expires_at,
                        open_attempts=document.open_attempts,
                    )
        return [found[i] for i in document_ids if i in found]

    def acquire_leases(
        self,
        document_ids: Sequence[int],
        owner: str,
        ttl_s: float,
        *,
        take_over: Collection[str] = (),
    ) -> list[int]:
        """Claim pending documents for ``owner`` until ``ttl_s`` from now.

        Each claim is one conditional ``UPDATE``: it succeeds only if the document is
        pending and its lease is free, expired, already ``owner``'s, or held by one of
        ``take_over`` (owners known to be dead). Two workers can never both succeed.

        Returns:
            The ids claimed, in the order given.
        """
        if not owner:
            raise ValueError("a lease needs an owner")
        now = utcnow()
        expires = now + timedelta(seconds=ttl_s)
        free = or_(
            DocumentRow.lease_owner.is_(None),
            DocumentRow.lease_expires_at < now,
            DocumentRow.lease_owner == owner,
        )
        if take_over:
            free = or_(free, DocumentRow.lease_owner.in_(list(take_over)))
        acquired: list[int] = []
        with self._write(f"lease {len(document_ids)} documents") as session:
            for document_id in document_ids:
                result = session.execute(
                    update(DocumentRow)
                    .where(
                        DocumentRow.id == document_id,
                        DocumentRow.status == DocumentStatus.PENDING.value,
                        free,
                    )
                    .values(lease_owner=owner, lease_expires_at=expires)
                    .execution_options(synchronize_session=False)
                )
                if _rowcount(result) == 1:
                    acquired.append(document_id)
        return acquired

    def renew_leases(self, document_ids: Sequence[int], owner: str, ttl_s: float) -> int:
        """Extend ``owner``'s leases to ``ttl_s`` from now; returns how many it still holds."""
        expires = utcnow() + timedelta(seconds=ttl_s)
        with self._write("renew leases") as session:
            renewed = 0
            for batch in _batches(list(document_ids)):
                result = session.execute(
                    update(DocumentRow)
                    .where(DocumentRow.id.in_(batch), DocumentRow.lease_owner == owner)
                    .values(lease_expires_at=expires)
                    .execution_options(synchronize_session=False)
                )
                renewed += _rowcount(result)
            return renewed

    def release_leases(self, document_ids: Sequence[int], owner: str) -> None:
        """Give up ``owner``'s leases on these documents (others' leases are left alone)."""
        with self._write("release leases") as session:
            for batch in _batches(list(document_ids)):
                session.execute(
                    update(DocumentRow)
                    .where(DocumentRow.id.in_(batch), DocumentRow.lease_owner == owner)
                    .values(lease_owner=None, lease_expires_at=None)
                    .execution_options(synchronize_session=False)
                )

    def begin_attempt(self, document_id: int) -> int:
        """Record that a parse of the document begins; returns the unfinished attempts.

        Called before parsing and paired with :meth:`end_attempt`: a worker that dies on
        the file leaves the count raised, so the count says how many workers it killed.
        """
        with self._write(f"begin an attempt on document {document_id}") as session:
            document = self._document_by_id(session, document_id)
            document.open_attempts += 1
            return document.open_attempts

    def end_attempt(self, document_id: int) -> None:
        """Record that the parse of the document finished, whatever its outcome."""
        with self._write(f"end an attempt on document {document_id}") as session:
            session.execute(
                update(DocumentRow)
                .where(DocumentRow.id == document_id)
                .values(open_attempts=0)
                .execution_options(synchronize_session=False)
            )

    def add_run_counts(self, run_id: int, counts: RunCounts, *, listed: bool = False) -> None:
        """Add to a run's counts (several workers do, concurrently).

        Args:
            listed: Also record that the listing is done and every document is queued.
                Only the first listing of a run counts: a second copy of it (a message
                delivered twice) adds nothing.
        """
        values: dict[str, Any] = {
            name: getattr(RunRow, name) + value for name, value in counts.as_dict().items() if value
        }
        if listed:
            values["listed_at"] = utcnow()
        if not values:
            return
        statement = update(RunRow).where(RunRow.id == run_id)
        if listed:
            statement = statement.where(RunRow.listed_at.is_(None))
        with self._write(f"count the work of run {run_id}") as session:
            session.execute(statement.values(**values).execution_options(synchronize_session=False))

    def complete_run_if_done(self, run_id: int) -> bool:
        """Complete a background run whose listing is done and has nothing pending.

        Leases left on its finished documents are cleared. Safe to call from every
        worker after every batch: exactly one call completes the run.

        Returns:
            Whether this call completed the run.
        """
        with self._write(f"complete run {run_id}") as session:
            run = session.get(RunRow, run_id, with_for_update=True)
            if run is None or run.status != RunStatus.RUNNING.value or run.listed_at is None:
                return False
            pending = session.execute(
                select(func.count())
                .select_from(DocumentRow)
                .where(
                    DocumentRow.run_id == run_id,
                    DocumentRow.status == DocumentStatus.PENDING.value,
                )
            ).scalar_one()
            if pending:
                return False
            session.execute(
                update(DocumentRow)
                .where(DocumentRow.run_id == run_id, DocumentRow.lease_owner.is_not(None))
                .values(lease_owner=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
            now = utcnow()
            run.status = RunStatus.COMPLETED.value
            run.finished_at = now
            run.duration_s = (now - run.started_at).total_seconds()
            return True

    def fail_run(self, run_id: int, error: str) -> None:
        """Record that a background run stopped (its listing failed); counts are kept."""
        with self._write(f"fail run {run_id}") as session:
            run = session.get(RunRow, run_id, with_for_update=True)
            if run is None or run.status != RunStatus.RUNNING.value:
                return
            now = utcnow()
            run.status = RunStatus.FAILED.value
            run.error = _truncate(error)
            run.finished_at = now
            run.duration_s = (now - run.started_at).total_seconds()

    def run_progress(self, run_id: int) -> RunProgress:
        """Where a run stands: queued, in progress, indexed, failed, from one snapshot.

        Raises:
            LedgerError: There is no such run.
        """
        now = utcnow()
        with self._read(f"read the progress of run {run_id}") as session:
            row = session.execute(
                select(RunRow, SourceRow.key).join(SourceRow).where(RunRow.id == run_id)
            ).one_or_none()
            if row is None:
                raise LedgerError(
                    f"ledger {self._url} has no run {run_id}; `tribrid status` lists the last run"
                )
            run, source_key = row
            leased = and_(DocumentRow.lease_owner.is_not(None), DocumentRow.lease_expires_at >= now)
            by_state: dict[tuple[str, bool], int] = {}
            for status, is_leased, count in session.execute(
                select(DocumentRow.status, leased, func.count())
                .where(DocumentRow.run_id == run_id)
                .group_by(DocumentRow.status, leased)
            ):
                by_state[(status, bool(is_leased))] = count

            def total(status: DocumentStatus) -> int:
                return sum(v for (s, _), v in by_state.items() if s == status.value)

            return RunProgress(
                run=_to_run(run, source_key),
                queued=by_state.get((DocumentStatus.PENDING.value, False), 0),
                in_progress=by_state.get((DocumentStatus.PENDING.value, True), 0),
                indexed=total(DocumentStatus.INDEXED),
                failed=total(DocumentStatus.FAILED),
                deleted=total(DocumentStatus.DELETED),
                listed=run.listed_at is not None,
            )


def open_ledger(url: str | None = None, *, echo: bool = False) -> SqlLedger:
    """Open the ledger at ``url``, or the one the settings name (``TRIBRID_DATABASE__URL``,
    default SQLite in the data directory).

    Raises:
        LedgerError: The database cannot be opened or migrated.
    """
    if url is None:
        from tribrid.settings import Settings

        url = Settings().database_url
    return SqlLedger(url, echo=echo)


__all__ = ["MIGRATIONS_DIR", "SqlLedger", "alembic_config", "open_ledger"]
