"""What ``tribrid status`` reports, as portable SQL and the records built from its rows.

The SQL ledger (:meth:`~tribrid.ledger.bookkeeping.SqlBookkeeping.status`) runs these
queries through SQLAlchemy on every backend. :func:`read_sqlite_status` runs the same
queries through the standard library's ``sqlite3`` on the default SQLite ledger, so
``tribrid status`` answers without importing SQLAlchemy (most of its start-up time).
Both paths share every query and every row conversion here, and a test checks they give
equal reports.

Example:
    >>> read_sqlite_status(Path("/tmp/tribrid-doc/nothing-here/ledger.db")) is None
    True
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tribrid.errors import LedgerError
from tribrid.ledger.base import (
    ArchiveStatus,
    DocumentStatus,
    FailureRecord,
    MemberStatus,
    RunCounts,
    RunRecord,
    RunStatus,
    StatusReport,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Members listed under each archive in a status report (``member_count`` has them all).
MAX_LISTED_MEMBERS = 50
# Archive keys per IN (...) clause: far below SQLite's and PostgreSQL's parameter limits.
_IN_BATCH = 500
_BUSY_TIMEOUT_S = 30.0
# Keys of archive members hold the member separator (``connectors.archives``, imported
# only when there are members: its compression modules cost ``status`` its start-up).
MEMBER_LIKE = "%!/%"

# Runs a query with named parameters (``:name``) and returns its rows as tuples.
Execute = Callable[[str, Mapping[str, Any]], Sequence[Sequence[Any]]]

RUN_COLUMNS = (
    "runs.id, runs.started_at, runs.finished_at, runs.status, runs.seen, runs.indexed, "
    "runs.unchanged, runs.failed, runs.deleted, runs.chunks_embedded, runs.chunks_reused, "
    "runs.chunks_deleted, runs.duration_s, runs.error"
)


def head_revision() -> str:
    """The revision of the newest migration, read from the file names.

    Each migration is ``versions/vNNNN_<what>.py`` with revision ``"NNNN"`` in a single
    line of history (tests/ledger/test_ledger_migrations.py checks both), so the head is
    the largest number. Reading it this way lets an up-to-date ledger open without
    importing Alembic or loading the migration scripts.
    """
    numbers = [
        path.name[1:5] for path in (MIGRATIONS_DIR / "versions").glob("v[0-9][0-9][0-9][0-9]_*.py")
    ]
    if not numbers:
        raise LedgerError(
            f"no ledger migrations in {MIGRATIONS_DIR / 'versions'}; reinstall tribrid"
        )
    return max(numbers)


def as_utc(value: Any) -> datetime:
    """A timestamp column's value as an aware UTC datetime.

    SQLite gives back the naive UTC text SQLAlchemy stored; PostgreSQL a ``datetime``.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp from the ledger, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def run_record(row: Sequence[Any], source_key: str) -> RunRecord:
    """The record of a ``runs`` row selected as :data:`RUN_COLUMNS`."""
    (id_, started, finished, status, *counts, duration, error) = row
    return RunRecord(
        id=id_,
        source_key=source_key,
        started_at=as_utc(started),
        finished_at=None if finished is None else as_utc(finished),
        status=RunStatus(status),
        counts=RunCounts(*counts),
        duration_s=duration,
        error=error,
    )


def summarise(
    execute: Execute, source_key: str | None = None, *, max_failures: int | None = 100
) -> StatusReport:
    """Summarise the ledger, for one source (by key) or all; see ``Ledger.status``.

    Args:
        execute: Runs one query; the caller holds one read transaction around this call,
            so the report is one consistent snapshot.
        source_key: Only this source; an unknown key gives an empty report.
        max_failures: Cap on the failures listed, newest first (``None``: all).
    """
    counts = {status.value: 0 for status in DocumentStatus}
    sources = list(execute("SELECT id, key FROM sources ORDER BY key", {}))
    if source_key is not None:
        sources = [row for row in sources if row[1] == source_key]
        if not sources:
            return StatusReport(counts=counts, chunks=0)
    source_id = sources[0][0] if source_key is not None else None
    params: dict[str, Any] = {"source_id": source_id}
    where = "" if source_id is None else " AND documents.source_id = :source_id"

    for status, count in execute(
        f"SELECT status, count(*) FROM documents WHERE 1 = 1{where} GROUP BY status", params
    ):
        counts[status] = count
    limit = "" if max_failures is None else f" LIMIT {int(max_failures)}"
    failures = [
        FailureRecord(
            source_key=source,
            key=key,
            path=path,
            error_kind=kind,
            error_message=message,
            updated_at=as_utc(updated),
        )
        for source, key, path, kind, message, updated in execute(
            "SELECT sources.key, documents.key, documents.path, documents.error_kind, "
            "documents.error_message, documents.updated_at FROM documents "
            "JOIN sources ON sources.id = documents.source_id "
            f"WHERE documents.status = :failed{where} "
            f"ORDER BY documents.updated_at DESC, documents.id DESC{limit}",
            {**params, "failed": DocumentStatus.FAILED.value},
        )
    ]
    run_where = "" if source_id is None else " WHERE runs.source_id = :source_id"
    runs = execute(
        f"SELECT {RUN_COLUMNS}, sources.key FROM runs "
        f"JOIN sources ON sources.id = runs.source_id{run_where} "
        "ORDER BY runs.started_at DESC, runs.id DESC LIMIT 1",
        params,
    )
    chunks = execute(
        "SELECT count(*) FROM chunks"
        + (
            ""
            if source_id is None
            else " JOIN documents ON documents.id = chunks.document_id"
            " WHERE documents.source_id = :source_id"
        ),
        params,
    )
    return StatusReport(
        counts=counts,
        chunks=chunks[0][0],
        failures=failures,
        last_run=run_record(runs[0][:-1], runs[0][-1]) if runs else None,
        sources=[row[1] for row in sources],
        archives=_archives(execute, where, params),
    )


def _archives(execute: Execute, where: str, params: dict[str, Any]) -> list[ArchiveStatus]:
    """Archives and their members (documents keyed ``archive!/member``), live ones only."""
    grouped: dict[tuple[str, str], list[MemberStatus]] = {}
    for key, status, error_kind, source_key in execute(
        "SELECT documents.key, documents.status, documents.error_kind, sources.key "
        "FROM documents JOIN sources ON sources.id = documents.source_id "
        f"WHERE documents.status != :deleted AND documents.key LIKE :members{where} "
        "ORDER BY sources.key, documents.key",
        {**params, "deleted": DocumentStatus.DELETED.value, "members": MEMBER_LIKE},
    ):
        from tribrid.connectors.archives import MEMBER_SEPARATOR, split_member_key

        archive, chain = split_member_key(key)
        if chain:
            member = MEMBER_SEPARATOR.join(chain)
            grouped.setdefault((source_key, archive), []).append(
                MemberStatus(member, status, error_kind)
            )
    own: dict[tuple[str, str], tuple[str, str | None]] = {}
    keys = sorted({key for _, key in grouped})
    for start in range(0, len(keys), _IN_BATCH):
        batch = keys[start : start + _IN_BATCH]
        names = {f"k{i}": key for i, key in enumerate(batch)}
        for key, status, error_kind, source_key in execute(
            "SELECT documents.key, documents.status, documents.error_kind, sources.key "
            "FROM documents JOIN sources ON sources.id = documents.source_id "
            f"WHERE documents.key IN ({', '.join(':' + name for name in names)})",
            names,
        ):
            if status != DocumentStatus.DELETED.value:
                own[(source_key, key)] = (status, error_kind)
    reports = []
    for (source_key, archive), members in grouped.items():
        status, error_kind = own.get((source_key, archive), ("", None))
        if status != DocumentStatus.FAILED.value:
            statuses = {m.status for m in members}
            if DocumentStatus.INDEXED.value in statuses:
                status = DocumentStatus.INDEXED.value
            elif statuses == {DocumentStatus.FAILED.value}:
                status = DocumentStatus.FAILED.value
            else:
                status = DocumentStatus.PENDING.value
        reports.append(
            ArchiveStatus(
                source_key=source_key,
                key=archive,
                status=status,
                members=members[:MAX_LISTED_MEMBERS],
                member_count=len(members),
                error_kind=error_kind,
            )
        )
    return reports


def read_sqlite_status(
    path: Path, source: str | None = None, *, max_failures: int | None = 100
) -> StatusReport | None:
    """The status report of an SQLite ledger file, read with the standard library alone.

    Args:
        path: The ledger file.
        source: Only this source, by name or else by key (``Ledger.find_source``).
        max_failures: Cap on the failures listed.

    Returns:
        The report, or ``None`` when this path cannot answer and the SQL ledger must:
        no such file, a ledger not at the migration head (it needs migrating first), or
        one SQLite cannot read right now.
    """
    if not path.is_file():
        return None
    try:
        # mode=rw: never create the file; nothing below writes.
        connection = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=_BUSY_TIMEOUT_S
        )
    except sqlite3.Error:
        return None
    with closing(connection):
        try:
            connection.execute("BEGIN")  # one snapshot for every query below
            version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
            if version != [(head_revision(),)]:
                return None

            def execute(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
                return connection.execute(sql, dict(params)).fetchall()

            key = source
            if source is not None:
                named = execute("SELECT key FROM sources WHERE name = :name", {"name": source})
                key = named[0][0] if named else source
            return summarise(execute, key, max_failures=max_failures)
        except sqlite3.Error:
            return None
