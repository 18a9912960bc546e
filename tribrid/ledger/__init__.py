"""The ledger: the source of truth of what is indexed (the vector store is derived from it).

Example:
    >>> from tribrid.ledger import open_ledger
    >>> with open_ledger("sqlite:////tmp/tribrid-doc/ledger.db") as ledger:
    ...     ledger.status().counts["failed"]
    0
"""

from __future__ import annotations

from tribrid.ledger.base import (
    ArchiveStatus,
    ChunkRecord,
    DocumentState,
    DocumentStatus,
    FailureRecord,
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
from tribrid.ledger.ledger import SqlLedger, open_ledger

__all__ = [
    "ArchiveStatus",
    "ChunkRecord",
    "DocumentState",
    "DocumentStatus",
    "FailureRecord",
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
