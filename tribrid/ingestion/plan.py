"""The plan stage: what a sync does with each listed document, decided against the ledger.

:func:`plan_document` is the rule for one document; :class:`ListingDiff` applies it to a
whole listing and, once the listing is done, says which documents vanished. The
foreground sync (:class:`~tribrid.ingestion.pipeline.SyncPipeline`) and the background
queueing (:func:`tribrid.background.jobs.queue_sync`) both consume the same diff, so
they can never disagree on what is new, changed, unchanged, refused or gone.

**Archives.** The diff opens archives (:mod:`tribrid.connectors.archives`): every member
is planned as a document of its own (``a.zip!/dir/m.pdf``, an
:class:`~tribrid.connectors.archives.ArchiveMember`), refused members fail one by one,
and an archive that cannot be read, goes over a limit or holds nothing indexable fails
under its own key. Members are recorded with the archive's mtime, so an archive whose
mtime matches all its members' is not opened at all; a changed one is scanned (every
member hashed) and only members whose bytes changed are parsed.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tribrid.connectors.archives import (
    ArchiveLimits,
    ArchiveMember,
    no_member_failure,
    scan_archive,
    split_member_key,
)
from tribrid.connectors.base import Connector, ListingFailure, SourceDocument
from tribrid.errors import ParseError
from tribrid.ingestion.base import FailureKind, document_ended, unreadable
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
        archives: Limits of reading archives, whose members become documents; ``None``
            lists archives as plain files.
    """

    def __init__(
        self,
        connector: Connector,
        known: Mapping[str, DocumentState],
        *,
        max_file_bytes: int | None = None,
        retry_failed: bool = False,
        damaged: Collection[str] = (),
        archives: ArchiveLimits | None = None,
    ) -> None:
        self._connector = connector
        self._known = known
        self._max_file_bytes = max_file_bytes
        self._retry_failed = retry_failed
        self._damaged = damaged
        self._archives = archives
        self._members: dict[str, list[DocumentState]] | None = None
        self._seen: set[str] = set()
        self._unlisted: list[str] = []
        self._done = False

    def __iter__(self) -> Iterator[Planned]:
        for item in self._connector.list_documents():
            before = self._known.get(item.key)
            if isinstance(item, ListingFailure):
                self._seen.add(item.key)
                self._unlisted.append(item.key.rstrip("/") + "/")
                plan = DocumentPlan(PlanAction.FAIL, kind=item.kind, message=item.message)
                yield Planned(item.key, None, plan, before)
                continue
            if self._archives is not None and self._archives.opens(item.key):
                yield from self._plan_archive(item, before, self._archives)
                continue
            self._seen.add(item.key)
            plan = plan_document(
                item,
                before,
                max_file_bytes=self._max_file_bytes,
                retry_failed=self._retry_failed,
                lost_points=item.key in self._damaged,
            )
            yield Planned(item.key, item, plan, before)
        self._done = True

    def _plan_archive(
        self, doc: SourceDocument, before: DocumentState | None, limits: ArchiveLimits
    ) -> Iterator[Planned]:
        """Plan an archive's members, or the archive's own failure."""
        rows = self._member_rows().get(doc.key, [])
        if before is not None and before.status == DocumentStatus.DELETED:
            before = None
        if self._archive_unchanged(doc, before, rows):
            for row in rows:
                self._seen.add(row.key)
                yield Planned(row.key, None, DocumentPlan(PlanAction.UNCHANGED), row)
            if before is not None:
                self._seen.add(doc.key)
                yield Planned(doc.key, doc, DocumentPlan(PlanAction.UNCHANGED), before)
            return
        try:
            entries = scan_archive(doc.path, key=doc.key, limits=limits)
        except ParseError as error:
            failure: tuple[str, str] = (error.kind, str(error))
            entries = []
        except OSError as error:
            unread = unreadable(doc.key, error)
            failure = (unread.kind, unread.message)
            entries = []
        else:
            indexable = any(e.failure is None for e in entries)
            failure = ("", "") if indexable else no_member_failure(doc.key, entries)
        for entry in entries:
            member = ArchiveMember(
                source_key=doc.source_key,
                key=entry.key,
                path=doc.path,
                size=entry.size,
                mtime_ns=doc.mtime_ns,
                member=entry.chain,
                digest=entry.digest,
            )
            member_before = self._known.get(entry.key)
            self._seen.add(entry.key)
            if entry.failure is not None:
                kind, message = entry.failure
                plan = DocumentPlan(PlanAction.FAIL, kind=kind, message=message)
            else:
                plan = plan_document(
                    member,
                    member_before,
                    max_file_bytes=self._max_file_bytes,
                    retry_failed=self._retry_failed,
                    lost_points=entry.key in self._damaged,
                )
            yield Planned(entry.key, member, plan, member_before)
        if failure[0]:
            self._seen.add(doc.key)
            plan = DocumentPlan(PlanAction.FAIL, kind=failure[0], message=failure[1])
            yield Planned(doc.key, doc, plan, before)

    def _archive_unchanged(
        self, doc: SourceDocument, before: DocumentState | None, rows: list[DocumentState]
    ) -> bool:
        """Whether an archive need not be opened: every row of it settled, at its mtime.

        Member rows carry the archive's mtime (their size is their own); the archive's
        own row exists only while it fails, and carries its size and mtime.
        """
        if before is None and not rows:
            return False
        if before is not None and (
            (before.size, before.mtime_ns) != (doc.size, doc.mtime_ns) or not self._settled(before)
        ):
            return False
        return all(
            row.mtime_ns == doc.mtime_ns and row.key not in self._damaged and self._settled(row)
            for row in rows
        )

    def _settled(self, state: DocumentState) -> bool:
        if state.status == DocumentStatus.INDEXED:
            return True
        return (
            state.status == DocumentStatus.FAILED
            and not self._retry_failed
            and state.error_kind not in RETRYABLE_FAILURES
        )

    def _member_rows(self) -> dict[str, list[DocumentState]]:
        """The ledger's live rows of archive members, by the key of their outermost archive."""
        if self._members is None:
            self._members = {}
            for key, state in self._known.items():
                if "!/" not in key or state.status == DocumentStatus.DELETED:
                    continue
                archive, chain = split_member_key(key)
                if chain:
                    self._members.setdefault(archive, []).append(state)
        return self._members

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
    document_ended(planned.key, "unchanged")
    return RunCounts(unchanged=1)


def chunking_record(chunking: Mapping[str, Any]) -> str:
    """The ledger's record of the chunking settings a source's documents are cut with."""
    return json.dumps(dict(sorted(chunking.items())), separators=(",", ":"))


def chunking_change(
    ledger: Ledger, source_id: int, source_key: str, chunking: Mapping[str, Any]
) -> str | None:
    """Why syncing the source with ``chunking`` would mix two chunkings in one index.

    A source's chunks are cut by the settings of its syncs. Unchanged documents are not
    cut again, so a sync with other settings would leave old and new chunks side by
    side; such a change needs a rebuild (``--recreate``: a new generation, cut the new
    way, replaces the live one when complete). A source without a record (its first
    sync, or a ledger from before the record) or without chunks adopts ``chunking``.

    Returns:
        The reason, naming the source, each changed setting and the fix; None when the
        sync may go ahead.
    """
    stored = ledger.source_chunking(source_id)
    if stored is None or stored == chunking_record(chunking):
        return None
    if not ledger.count_chunks(source_id):
        return None
    try:
        before = json.loads(stored)
    except ValueError:
        before = {}
    before = before if isinstance(before, dict) else {}
    changed = [
        f"{name} {before.get(name)!r} -> {value!r} (TRIBRID_CHUNKING__{name.upper()})"
        for name, value in sorted(chunking.items())
        if before.get(name) != value
    ] or ["a setting this tribrid no longer has"]
    return (
        f"source {source_key} was chunked with other settings than now: "
        f"{', '.join(changed)}. A sync would leave its unchanged documents cut the old way "
        "beside new ones cut the new way. Rebuild the index with the new settings "
        "(`tribrid ingest FOLDER --recreate`: searches keep answering from the current "
        "index until the new one is complete), or set the chunking back"
    )


def record_chunking(ledger: Ledger, source_id: int, chunking: Mapping[str, Any] | None) -> None:
    """Record ``chunking`` as the source's, when it is not already."""
    if chunking is None:
        return
    record = chunking_record(chunking)
    if ledger.source_chunking(source_id) != record:
        ledger.record_chunking(source_id, record)


__all__ = [
    "RETRYABLE_FAILURES",
    "DocumentPlan",
    "ListingDiff",
    "PlanAction",
    "Planned",
    "chunking_change",
    "chunking_record",
    "plan_document",
    "record_chunking",
    "settle_unchanged",
]
