"""Opening the ledger's database: URLs, engines, migrations and transactions.

:class:`Database` turns a URL into a migrated database and hands out transactions.
It knows nothing of what the tables mean; the roles built on it do
(:class:`~tribrid.ledger.bookkeeping.SqlBookkeeping` and
:class:`~tribrid.ledger.runs.SqlRunQueue`, assembled as
:class:`~tribrid.ledger.ledger.SqlLedger`).

Example:
    >>> from sqlalchemy import text
    >>> with Database("sqlite:////tmp/tribrid-doc/ledger.db") as db:
    ...     with db.read("count sources") as session:
    ...         session.execute(text("SELECT count(*) FROM sources")).scalar_one()
    0
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeAlias, TypeVar

from sqlalchemy import Connection, Engine, Executable, Row, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from tribrid.errors import LedgerError
from tribrid.ledger.summary import MIGRATIONS_DIR, head_revision

_T = TypeVar("_T")

if TYPE_CHECKING:
    from alembic.config import Config

    AnyRow: TypeAlias = Row[*tuple[Any, ...]]

_STREAM_BATCH = 1000
# Bound on ids per IN (...) clause: far below SQLite's and PostgreSQL's parameter limits.
_IN_BATCH = 900
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_PG_CONNECT_TIMEOUT_S = 10
# Serialises concurrent migrations of one PostgreSQL database (any constant will do).
_PG_MIGRATION_LOCK = 0x7472_6962  # "trib"
# Execution option that marks a connection as a writer, so SQLite takes its write
# lock at BEGIN instead of failing to upgrade a read lock later.
_WRITER = "tribrid_writer"
_ENV_HINT = "or set TRIBRID_DATABASE__URL to another ledger"

# SQLite keeps each process's lock bookkeeping in memory. A child forked while a connection
# of its parent is open inherits that bookkeeping but not the locks it describes, and then
# reads and writes without them: "database is locked" at once, or a ledger that other
# processes see as "file is not a database". Threads that use a ledger in a process whose
# other threads fork (a Celery worker's main process) do so inside no_fork().
_NO_FORK = threading.Lock()
os.register_at_fork(
    before=_NO_FORK.acquire,
    after_in_parent=_NO_FORK.release,
    after_in_child=_NO_FORK.release,
)


@contextmanager
def no_fork() -> Iterator[None]:
    """Hold off ``os.fork`` in this process until the block ends.

    Open and close a ledger inside the block from a thread of a process that forks
    (the Celery worker's main process, whose pool forks new children at any time), so
    that no child inherits an open SQLite connection. A fork waits for the block; the
    block must not fork itself.
    """
    with _NO_FORK:
        yield


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for the ledger migrations, built in code (no alembic.ini).

    Args:
        url: Database to migrate when no connection is shared through
            ``config.attributes["connection"]`` (for writing new revisions).

    Returns:
        A config whose ``script_location`` is the migrations folder of the package.
    """
    from alembic.config import Config

    cfg = Config()
    # ConfigParser interpolates '%'; a path containing one must be escaped.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.attributes["url"] = url
    return cfg


def batches(items: Sequence[_T], size: int = _IN_BATCH) -> Iterator[Sequence[_T]]:
    """``items`` in slices small enough for one ``IN (...)`` clause on every backend."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rowcount(result: Any) -> int:
    """Rows an UPDATE matched (``CursorResult.rowcount``)."""
    return int(result.rowcount)


class Database:
    """One ledger database, SQLite or PostgreSQL, migrated to the current schema on open.

    Every transaction it hands out is its own and safe to use from several threads.
    Streams hold one pooled connection until their iterator is exhausted or closed.
    Errors from the database are raised as :class:`~tribrid.errors.LedgerError` naming
    the database (password masked) and what to do.

    SQLite connections run in WAL mode with a 30 s busy timeout, and a writer takes
    the write lock at ``BEGIN IMMEDIATE`` so that two writers queue instead of
    deadlocking. PostgreSQL migrations hold an advisory lock, so several processes
    opening one new database migrate it once.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path/ledger.db`` or
            ``postgresql+psycopg://user@host:5432/db`` (``postgresql://`` means psycopg 3).
        echo: Log every SQL statement (for debugging).

    Raises:
        LedgerError: The database cannot be opened or migrated; the message names it
            (password masked) and the fix.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self._closed = False
        parsed = self._parse_url(url)
        self._url = parsed.render_as_string(hide_password=True)
        self._is_sqlite = parsed.get_backend_name() == "sqlite"
        self._sqlite_file = (
            Path(parsed.database).expanduser()
            if self._is_sqlite and parsed.database not in (None, "", ":memory:")
            else None
        )
        self._fix = self._fix_hint(parsed)
        if self._is_sqlite:
            self._prepare_sqlite_file(parsed)
        try:
            self._engine = self._create_engine(parsed, echo=echo)
        except (SQLAlchemyError, ImportError) as e:
            raise LedgerError(
                f"cannot open the ledger at {self._url}: {e}; install the database driver "
                f"(for PostgreSQL the postgres extra: pip install 'tribrid[postgres]') {_ENV_HINT}"
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

    def _current_revision(self) -> str | None:
        """The ledger's Alembic revision, or ``None`` when it has none (a new database)."""
        try:
            with self._engine.connect() as connection:
                return connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar_one_or_none()
        except (SQLAlchemyError, sqlite3.Error):
            return None  # no version table yet: the migration below says what is wrong

    def _migrate(self) -> None:
        if self._current_revision() == head_revision():
            return  # up to date: opening costs one query, and Alembic is never imported
        from alembic import command
        from alembic.util.exc import CommandError

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

    # -- transactions ---------------------------------------------------------------

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
    def write(self, action: str) -> Iterator[Session]:
        """A session in a write transaction, committed when the block ends without error.

        Args:
            action: What the transaction does, for the error message if it fails
                (``"record 'a.md' as indexed"``).

        Raises:
            LedgerError: The ledger is closed, or the database refused the transaction
                (nothing of it was written).
        """
        self._check_open()
        with self._guard(action), self._write_session.begin() as session:
            yield session

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Hold the lock ``name`` for the block, across processes; never waits.

        Yields whether this process got it. Every user of the same ledger sees the same
        lock: a PostgreSQL session advisory lock (across hosts), or for SQLite an
        ``flock`` on a file beside the database (the processes share its folder). The
        lock goes with the process, so a killed holder never leaves it behind.
        """
        self._check_open()
        if not self._is_sqlite:
            key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
            key -= 1 << 63  # PostgreSQL's bigint is signed
            with self._guard(f"take the lock {name!r}"), self._engine.connect() as connection:
                got = bool(
                    connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                )
                connection.commit()
                try:
                    yield got
                finally:
                    if got:
                        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        connection.commit()
            return
        if self._sqlite_file is None:  # in memory: one process only
            yield True
            return
        safe = "".join(c if c.isalnum() else "-" for c in name)
        lock = self._sqlite_file.with_name(f"{self._sqlite_file.name}.{safe}.lock")
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def read(self, action: str) -> Iterator[Session]:
        """A session for reading; ``action`` names it in the error message if it fails."""
        self._check_open()
        with self._guard(action), self._read_session() as session:
            yield session

    def stream(
        self, statement: Executable, convert: Callable[[AnyRow], _T], action: str
    ) -> Iterator[_T]:
        """Run ``statement`` and yield ``convert(row)`` for each row, fetched in batches.

        The iterator holds one pooled connection until it is exhausted or closed, and
        sees the database as it was when iteration started.
        """
        self._check_open()
        with self._guard(action), self._engine.connect() as connection:
            result = connection.execution_options(yield_per=_STREAM_BATCH).execute(statement)
            try:
                for row in result:
                    yield convert(row)
            finally:
                # Closes a PostgreSQL server-side cursor even when the caller stops early.
                result.close()

    def insert_ignore(
        self, entity: type[Any], values: dict[str, Any] | None, keys: list[str]
    ) -> Executable:
        """INSERT that does nothing when a row with the same ``keys`` exists.

        ``values=None`` leaves them to ``session.execute(statement, rows)``, so that
        one statement inserts a list of rows.
        """
        # The dialect's insert is imported here: opening a ledger imports one dialect only.
        if self._is_sqlite:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            lite = sqlite_insert(entity)
            lite = lite if values is None else lite.values(**values)
            return lite.on_conflict_do_nothing(index_elements=keys)
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        pg = postgresql_insert(entity)
        pg = pg if values is None else pg.values(**values)
        return pg.on_conflict_do_nothing(index_elements=keys)

    # -- public API -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The database's URL, password masked."""
        return self._url

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and diagnostics; use the transactions above)."""
        return self._engine

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close every pooled connection. The database cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self._url!r})"


class DatabaseRole:
    """Base of the ledger's role classes: each works on one shared, open :class:`Database`.

    A role owns no connection of its own; closing it closes the shared database, and
    with it every role built on that database.

    Args:
        db: The open database the role reads and writes.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def url(self) -> str:
        """The ledger's URL, password masked."""
        return self._db.url

    def close(self) -> None:
        """Close every pooled connection. The ledger cannot be used afterwards."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._db.url!r})"


__all__ = [
    "MIGRATIONS_DIR",
    "Database",
    "DatabaseRole",
    "alembic_config",
    "batches",
    "head_revision",
    "rowcount",
]
