"""The ledger: the source of truth of what is indexed (the vector store is derived from it).

Example:
    >>> from tribrid.ledger import open_ledger
    >>> with open_ledger("sqlite:////tmp/tribrid-doc/ledger.db") as ledger:
    ...     ledger.status().counts["failed"]
    0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tribrid.ledger.base import (
    ArchiveStatus,
    ChunkRecord,
    DocumentState,
    DocumentStatus,
    FailureRecord,
    IndexedDocument,
    Ledger,
    MemberStatus,
    QueueLedger,
    RunCounts,
    RunProgress,
    RunQueue,
    RunRecord,
    RunStatus,
    SourceRecord,
    StatusReport,
    WorkItem,
)

if TYPE_CHECKING:
    from tribrid.ledger.ledger import SqlLedger, open_ledger


def __getattr__(name: str) -> Any:
    # The SQL ledger (SQLAlchemy, Alembic) is imported on first use: the records above are
    # what the CLI and the remote clients need, and they import nothing heavy.
    if name in ("SqlLedger", "open_ledger"):
        from tribrid.ledger import ledger

        return getattr(ledger, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ArchiveStatus",
    "ChunkRecord",
    "DocumentState",
    "DocumentStatus",
    "FailureRecord",
    "IndexedDocument",
    "Ledger",
    "MemberStatus",
    "QueueLedger",
    "RunCounts",
    "RunProgress",
    "RunQueue",
    "RunRecord",
    "RunStatus",
    "SourceRecord",
    "SqlLedger",
    "StatusReport",
    "WorkItem",
    "open_ledger",
]
