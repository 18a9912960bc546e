"""The SQL ledger: SQLite by default, PostgreSQL by URL, schema managed by Alembic.

The ledger is the source of truth of what is indexed; the vector store is derived
from it. Every document of every source has one row (deleted documents included, so a
key that re-appears reuses its row), and every point in the store has one chunk row.

:class:`SqlLedger` assembles the ledger's roles over one :class:`~tribrid.ledger.database.Database`:

* :mod:`tribrid.ledger.database` opens and migrates the database and hands out
  transactions;
* :mod:`tribrid.ledger.bookkeeping` records sources, runs, documents and chunks
  (the :class:`~tribrid.ledger.base.Ledger` protocol, with the write-ahead rule
  its callers follow);
* :mod:`tribrid.ledger.runs` keeps the queue of background runs: pending documents,
  leases, progress (the :class:`~tribrid.ledger.base.RunQueue` protocol).

Example:
    >>> ledger = open_ledger("sqlite:////tmp/tribrid-doc/ledger.db")
    >>> source_id = ledger.ensure_source("docs", kind="local", location="/srv/docs")
    >>> run_id = ledger.start_run(source_id)
    >>> ledger.finish_run(run_id, RunCounts(seen=0))
    >>> ledger.close()
"""

from __future__ import annotations

from sqlalchemy import Engine

from tribrid.ledger.bookkeeping import SqlBookkeeping
from tribrid.ledger.database import Database
from tribrid.ledger.runs import SqlRunQueue


class SqlLedger(SqlBookkeeping, SqlRunQueue):
    """The ledger on SQLite (default) or PostgreSQL, migrated to the current schema on open.

    Implements :class:`~tribrid.ledger.base.QueueLedger`: the sync bookkeeping of
    :class:`~tribrid.ledger.bookkeeping.SqlBookkeeping` and the background run queue of
    :class:`~tribrid.ledger.runs.SqlRunQueue`, over one shared database.

    Every method runs in its own transaction and is safe to call from several threads.
    Streaming methods hold one pooled connection until their iterator is exhausted or
    closed. Errors from the database are raised as :class:`~tribrid.errors.LedgerError`
    naming the ledger and what to do.

    Open one ledger per process: pooled connections must not cross a ``fork`` (a
    prefork worker opens its own after it starts). Several processes may share one
    database; on SQLite, WAL mode lets readers run beside the one writer, and writers
    wait up to 30 s for each other.

    Args and errors: as :class:`~tribrid.ledger.database.Database`, which opens (and
    migrates) the database every role shares.

    Example:
        >>> with SqlLedger("sqlite:////tmp/tribrid-doc/ledger.db") as ledger:
        ...     source_id = ledger.ensure_source("docs", kind="local", location="/srv/docs")
        ...     ledger.status("docs").counts["indexed"]
        0
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        super().__init__(Database(url, echo=echo))

    @property
    def _engine(self) -> Engine:
        # For tests that watch or inspect the connections (statement counts, the pool).
        return self._db.engine


def open_ledger(url: str, *, echo: bool = False) -> SqlLedger:
    """Open the ledger at ``url``, migrating it to the current schema.

    The caller chooses the database: the edges (the CLI, the worker bootstrap, the public
    factories) pass the settings' ``database_url`` (``TRIBRID_DATABASE__URL``, by default
    SQLite in the data directory); the ledger itself never reads the settings.

    Args:
        url: SQLAlchemy URL, as for :class:`SqlLedger`.
        echo: Log every SQL statement (for debugging).

    Raises:
        TypeError: ``url`` is missing.
        LedgerError: The database cannot be opened or migrated.
    """
    if url is None:  # the signature used to allow it, meaning "read the settings"
        raise TypeError(
            "open_ledger() needs the ledger's URL; pass the settings' database_url "
            "(TRIBRID_DATABASE__URL) from the caller"
        )
    return SqlLedger(url, echo=echo)


__all__ = ["SqlLedger", "open_ledger"]
