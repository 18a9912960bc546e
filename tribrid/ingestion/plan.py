"""The plan stage: what a sync does with each listed document, decided against the ledger.

:func:`plan_document` is the rule for one document; :class:`ListingDiff` applies it to a
whole listing and, once the listing is done, says which documents vanished. The
foreground sync (:class:`~tribrid.ingestion.pipeline.SyncPipeline`) and the background
queueing (:func:`tribrid.background.jobs.queue_sync`) both consume the same diff, so
they can never disagree on what is new, changed, unchanged, refused or gone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from tribrid.connectors.base import Connector, ListingFailure, SourceDocument
from tribrid.ingestion.base import FailureKind, unreadable
from tribrid.ledger.base import DocumentState, DocumentStatus, Ledger, RunCounts

#: Failure kinds that say nothing about the file (the store or the models were at fault):
#: the next sync retries such a document even when the file did not change.
RETRYABLE_FAILURES: frozenset[str] = frozenset(
    {FailureKind.STORE_FAILED, FailureKind.ENCODE_FAILED}
)


class PlanAction(StrEnum):
    """What a sync does with one listed document."""

    UNCHANGED = "unchanged"  # nothing
    TOUCH = "touch"  # same bytes, new mtime or size: record those only
    FAIL = "fail"  # fails without being parsed (too large, unreadable, refused)
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

    Same size and mtime as an indexed or failed document → unchanged; otherwise the
    bytes are hashed and the same hash → touch only; anything else is parsed. A document
    that failed for a reason in :data:`RETRYABLE_FAILURES`, or any failed document with
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
        failure = unreadable(doc.key, e)
        return DocumentPlan(PlanAction.FAIL, kind=failure.kind, message=failure.message)
    if before is not None and settled and not lost_points and before.content_hash == digest:
        return DocumentPlan(PlanAction.TOUCH, content_hash=digest)
    return DocumentPlan(PlanAction.PARSE, content_hash=digest)


@dataclass(frozen=True)
class Planned:
    """One listed item and the plan for it.

    Attributes:
        key: The document's key.
        doc: The listed document; ``None`` for a path the connector refused.
        plan: What to do with it (a refused path is planned ``FAIL``).
        before: What the ledger knew about it, if anything.
    """

    key: str
    doc: SourceDocument | None
    plan: DocumentPlan
    before: DocumentState | None


class ListingDiff:
    """A connector's listing, diffed against the ledger's documents of its source.

    Iterate it once: it yields a :class:`Planned` per listed item, as the listing
    streams. Afterwards :meth:`vanished` gives the documents the ledger knows that were
    not listed (except below folders that could not be listed this time, which is no
    evidence of deletion).

    Args:
        connector: The source.
        known: The ledger's documents of the source, by key.
        max_file_bytes: Larger files fail as ``too_large`` without being read.
        retry_failed: Parse failed documents again even when unchanged.
        damaged: Keys of indexed documents whose points went missing from the store.
    """

    def __init__(
        self,
        connector: Connector,
        known: Mapping[str, DocumentState],
        *,
        max_file_bytes: int | None = None,
        retry_failed: bool = False,
        damaged: Collection[str] = (),
    ) -> None:
        self._connector = connector
        self._known = known
        self._max_file_bytes = max_file_bytes
        self._retry_failed = retry_failed
        self._damaged = damaged
        self._seen: set[str] = set()
        self._unlisted: list[str] = []
        self._done = False

    def __iter__(self) -> Iterator[Planned]:
        for item in self._connector.list_documents():
            self._seen.add(item.key)
            before = self._known.get(item.key)
            if isinstance(item, ListingFailure):
                self._unlisted.append(item.key.rstrip("/") + "/")
                plan = DocumentPlan(PlanAction.FAIL, kind=item.kind, message=item.message)
                yield Planned(item.key, None, plan, before)
                continue
            plan = plan_document(
                item,
                before,
                max_file_bytes=self._max_file_bytes,
                retry_failed=self._retry_failed,
                lost_points=item.key in self._damaged,
            )
            yield Planned(item.key, item, plan, before)
        self._done = True

    def vanished(self) -> list[DocumentState]:
        """The ledger's live documents that the (finished) listing did not give.

        Raises:
            RuntimeError: The listing was not iterated to its end.
        """
        if not self._done:
            raise RuntimeError("ListingDiff.vanished() needs the whole listing first")
        return [
            before
            for key, before in self._known.items()
            if key not in self._seen
            and before.status != DocumentStatus.DELETED
            and not any(key.startswith(prefix) for prefix in self._unlisted)
        ]


def settle_unchanged(ledger: Ledger, planned: Planned) -> RunCounts:
    """Record an ``UNCHANGED`` or ``TOUCH`` document (only a touch writes the ledger)."""
    if planned.plan.action == PlanAction.TOUCH:
        assert planned.before is not None and planned.doc is not None
        ledger.record_unchanged(
            planned.before.id, mtime_ns=planned.doc.mtime_ns, size=planned.doc.size
        )
    return RunCounts(unchanged=1)


__all__ = [
    "RETRYABLE_FAILURES",
    "DocumentPlan",
    "ListingDiff",
    "PlanAction",
    "Planned",
    "plan_document",
    "settle_unchanged",
]
