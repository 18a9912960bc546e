"""The write stage: encode new chunks, upsert them, record them, delete what went stale.

Order of writes, for every batch of documents:

1. new points are upserted to the store;
2. the ledger records the documents and their chunks, and hands back the point ids
   that are no longer part of them;
3. those stale points are deleted from the store.

A crash between two steps leaves at worst orphan points that the next sync overwrites
(ids are deterministic) or removes (:func:`remove_orphans`), or stale points that the
ledger still lists and deletes later. Nothing is ever half-visible and nothing is
duplicated.

The stage is split in two so that encoding and writing can happen in different
processes: :func:`encode_batch` reads the ledger and runs the models, :func:`commit_batch`
writes. The foreground sync does both in one process (:class:`DocumentWriter`); a
background worker encodes and hands the batch to the process that owns the store, as
JSON (:func:`batch_to_json`). Failures and deletions go through :func:`record_failure`,
:func:`remove_vanished` and :func:`remove_orphans`, the same for every caller.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tribrid import metrics
from tribrid.connectors.base import SourceDocument
from tribrid.encoders import EncoderSet
from tribrid.ingestion.base import Chunk, ParsedDocument, document_ended
from tribrid.ingestion.vector_cache import CachedVectors, VectorCache
from tribrid.ledger.base import ChunkRecord, DocumentState, IndexedDocument, Ledger, RunCounts
from tribrid.store.base import Point, VectorStore
from tribrid.store.generations import store_generation
from tribrid.store.points import SOURCE_KEY
from tribrid.store.wire import point_from_json, point_to_json

log = logging.getLogger(__name__)

#: Deletes points by id: ``store.delete``, or a background sink's ``delete``.
DeletePoints = Callable[[Sequence[str]], None]
#: ``(document, SHA-256 of its bytes, its parsed chunks)``: one document to write.
ParsedItem = tuple[SourceDocument, str, ParsedDocument]

#: Chunks encoded (and, in the foreground, upserted) together.
DEFAULT_SLICE_CHUNKS = 256


@dataclass(frozen=True)
class DocumentRecord:
    """What the ledger records for one parsed document once its points are written."""

    key: str
    size: int
    mtime_ns: int
    content_hash: str
    chunks: tuple[ChunkRecord, ...]


@dataclass(frozen=True)
class WriteBatch:
    """A batch of parsed documents, encoded and ready to write (see :func:`encode_batch`).

    Attributes:
        source_id: Ledger id of the source.
        points: The new points still to upsert (none when they were written as they
            were encoded).
        payload_updates: ``(point id, payload)`` of kept points whose position changed.
        documents: What to record in the ledger, once the points are written.
        reused: Chunks that cost no encoding: their existing point was kept, or their
            vectors were those of an identical text (in this batch, or in the vector cache).
        encoded: Chunks whose text went through the models (default: ``len(points)``).
    """

    source_id: int
    points: tuple[Point, ...]
    payload_updates: tuple[tuple[str, Mapping[str, Any]], ...]
    documents: tuple[DocumentRecord, ...]
    reused: int
    encoded: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.encoded < 0:
            object.__setattr__(self, "encoded", len(self.points))
        if self.encoded + self.reused < len(self.points):
            raise ValueError(
                f"WriteBatch says {self.encoded} chunks were encoded and {self.reused} reused "
                f"but carries {len(self.points)} points"
            )


def encode_chunks(
    encoders: EncoderSet, chunks: Sequence[Chunk], *, cache: VectorCache | None = None
) -> list[Point]:
    """Encode chunks into the points the store holds: three vectors and the payload."""
    return encode_points(encoders, chunks, cache=cache)[0]


def encode_points(
    encoders: EncoderSet, chunks: Sequence[Chunk], *, cache: VectorCache | None = None
) -> tuple[list[Point], int]:
    """Encode chunks into points, each distinct text once; returns the points and how many
    texts went through the models.

    Chunks with the same text (same ``content_hash``) share one encoding, and with a
    ``cache`` a text encoded before, in any document or run, is not encoded again (see
    :mod:`tribrid.ingestion.vector_cache`).
    """
    texts: dict[str, str] = {}
    for chunk in chunks:
        texts.setdefault(chunk.content_hash, chunk.text)
    vectors = cache.get_many(texts) if cache is not None else {}
    missing = [digest for digest in texts if digest not in vectors]
    if missing:
        with metrics.timed("encode"):
            encoded = encoders.encode_documents([texts[d] for d in missing])
        fresh = {
            digest: CachedVectors(
                dense=encoded.dense[i].tolist(), splade=encoded.splade[i], bm25=encoded.bm25[i]
            )
            for i, digest in enumerate(missing)
        }
        vectors.update(fresh)
        if cache is not None:
            cache.put_many(fresh)
    points = [
        Point(
            id=chunk.point_id,
            dense=vectors[chunk.content_hash].dense,
            splade=vectors[chunk.content_hash].splade,
            bm25=vectors[chunk.content_hash].bm25,
            payload=chunk.payload(),
        )
        for chunk in chunks
    ]
    return points, len(missing)


def _known_point_ids(
    ledger: Ledger,
    batch: Sequence[ParsedItem],
    existing: Mapping[str, DocumentState],
    trusted_ids: set[str] | None,
) -> dict[str, ChunkRecord]:
    doc_ids = [existing[doc.key].id for doc, _, _ in batch if doc.key in existing]
    if not doc_ids:
        return {}
    by_doc = ledger.chunks_of_many(doc_ids)
    known = {rec.point_id: rec for records in by_doc.values() for rec in records}
    if trusted_ids is not None:
        known = {pid: rec for pid, rec in known.items() if pid in trusted_ids}
    return known


def _split_chunks(
    batch: Sequence[ParsedItem], known_ids: Mapping[str, ChunkRecord]
) -> tuple[list[Chunk], list[tuple[str, Mapping[str, Any]]], int]:
    """The chunks to encode, the payloads to refresh, and how many points are kept."""
    to_encode: list[Chunk] = []
    moved: list[tuple[str, Mapping[str, Any]]] = []
    reused = 0
    for _, _, parsed in batch:
        for chunk in parsed.chunks:
            before = known_ids.get(chunk.point_id)
            if before is None:
                to_encode.append(chunk)
                continue
            reused += 1
            if before.chunk_index != chunk.index:
                # Same text, new position: the vectors stay, the payload follows.
                moved.append((chunk.point_id, chunk.payload()))
    return to_encode, moved, reused


def _document_records(batch: Sequence[ParsedItem]) -> tuple[DocumentRecord, ...]:
    return tuple(
        DocumentRecord(
            key=doc.key,
            size=doc.size,
            mtime_ns=doc.mtime_ns,
            content_hash=digest,
            chunks=tuple(ChunkRecord(c.point_id, c.index, c.content_hash) for c in parsed.chunks),
        )
        for doc, digest, parsed in batch
    )


def encode_batch(
    ledger: Ledger,
    encoders: EncoderSet,
    source_id: int,
    batch: Sequence[ParsedItem],
    *,
    existing: Mapping[str, DocumentState],
    trusted_ids: set[str] | None = None,
    write_points: Callable[[Sequence[Point]], None] | None = None,
    on_encoded: Callable[[int], None] | None = None,
    slice_chunks: int = DEFAULT_SLICE_CHUNKS,
    cache: VectorCache | None = None,
) -> WriteBatch:
    """Encode the new chunks of a batch of parsed documents (the first half of a write).

    Chunks whose point already exists (same document, same text) are not encoded again;
    only their payload is refreshed when their position changed. A new chunk whose text
    another chunk of the slice has, or that ``cache`` holds, takes those vectors instead
    of being encoded. Chunks are encoded a slice at a time, so one long document never
    holds all its vectors at once when ``write_points`` takes each slice.

    Args:
        ledger: Read for the point ids the documents already have.
        encoders: The three encoders.
        source_id: Ledger id of the source.
        batch: The parsed documents.
        existing: Ledger state of documents seen before, by key.
        trusted_ids: When given, only these existing point ids are reused; any other
            chunk is re-encoded (the store lost points the ledger lists).
        write_points: Called with each encoded slice (the foreground upserts it at once);
            without it the points travel in the batch to :func:`commit_batch`.
        on_encoded: Called with the number of chunks after each slice.
        slice_chunks: Chunks encoded together.
        cache: Vectors of texts encoded before (see :mod:`tribrid.ingestion.vector_cache`).

    Returns:
        What :func:`commit_batch` needs to finish the write.
    """
    if slice_chunks < 1:
        raise ValueError(f"slice_chunks must be >= 1, got {slice_chunks}")
    known_ids = _known_point_ids(ledger, batch, existing, trusted_ids)
    to_encode, moved, reused = _split_chunks(batch, known_ids)
    carried: list[Point] = []
    encoded = 0
    for start in range(0, len(to_encode), slice_chunks):
        part = to_encode[start : start + slice_chunks]
        points, count = encode_points(encoders, part, cache=cache)
        encoded += count
        if write_points is not None:
            write_points(points)
        else:
            carried.extend(points)
        if on_encoded is not None:
            on_encoded(len(part))
    return WriteBatch(
        source_id=source_id,
        points=tuple(carried),
        payload_updates=tuple(moved),
        documents=_document_records(batch),
        reused=reused + len(to_encode) - encoded,
        encoded=encoded,
    )


def timed_upsert(store: VectorStore, points: Sequence[Point]) -> None:
    """``store.upsert(points)``, observed as one ``upsert`` stage."""
    with metrics.timed("upsert"):
        store.upsert(points)


def commit_batch(
    ledger: Ledger, store: VectorStore, batch: WriteBatch, *, upsert_batch: int = 256
) -> RunCounts:
    """Write an encoded batch: points first, then the ledger, then stale points out.

    Idempotent: committing the same batch twice leaves the same store and ledger.
    The documents are recorded in the generation the store serves, when it has them.
    """
    generation = store_generation(store)
    for point_id, payload in batch.payload_updates:
        store.set_payload(point_id, payload)
    for start in range(0, len(batch.points), upsert_batch):
        timed_upsert(store, batch.points[start : start + upsert_batch])
    stale_of = ledger.record_indexed_many(
        batch.source_id,
        [
            IndexedDocument(
                record.key,
                path=record.key,
                size=record.size,
                mtime_ns=record.mtime_ns,
                content_hash=record.content_hash,
                chunks=record.chunks,
            )
            for record in batch.documents
        ],
        generation=generation,
    )
    stale = [point_id for ids in stale_of for point_id in ids]
    if stale:
        store.delete(stale)
    for record in batch.documents:
        document_ended(record.key, "indexed", chunks=len(record.chunks))
    stale_total = len(stale)
    metrics.chunks_written(batch.encoded)
    return RunCounts(
        indexed=len(batch.documents),
        chunks_embedded=batch.encoded,
        chunks_reused=batch.reused,
        chunks_deleted=stale_total,
    )


class DocumentWriter:
    """Encodes and writes batches of parsed documents in one process: the one writer.

    :meth:`write` is :func:`encode_batch` with each slice upserted as it is encoded,
    then :func:`commit_batch` for the ledger and the stale points.

    Args:
        ledger: Where documents and chunks are recorded.
        store: Where points are written.
        encoders: The three encoders.
        upsert_batch: Chunks encoded and upserted together.
        cache: Vectors of texts encoded before, reused instead of encoding them again.
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        store: VectorStore,
        encoders: EncoderSet,
        upsert_batch: int = DEFAULT_SLICE_CHUNKS,
        cache: VectorCache | None = None,
    ) -> None:
        self._ledger = ledger
        self._store = store
        self._encoders = encoders
        self._upsert_batch = upsert_batch
        self._cache = cache

    def write(
        self,
        source_id: int,
        batch: Sequence[ParsedItem],
        *,
        existing: Mapping[str, DocumentState],
        trusted_ids: set[str] | None = None,
        on_encoded: Callable[[int], None] | None = None,
    ) -> RunCounts:
        """Write a batch of parsed documents and record them in the ledger.

        Returns:
            The chunk and document counts of the batch.
        """
        encoded = encode_batch(
            self._ledger,
            self._encoders,
            source_id,
            batch,
            existing=existing,
            trusted_ids=trusted_ids,
            write_points=lambda points: timed_upsert(self._store, points),
            on_encoded=on_encoded,
            slice_chunks=self._upsert_batch,
            cache=self._cache,
        )
        return commit_batch(self._ledger, self._store, encoded)


# -- failures and deletions -------------------------------------------------------------


def record_failure(
    ledger: Ledger,
    delete: DeletePoints,
    source_id: int,
    key: str,
    *,
    kind: str,
    message: str,
    size: int = 0,
    mtime_ns: int = 0,
    content_hash: str | None = None,
) -> int:
    """Record a document as failed and delete the points it had; returns how many.

    Every caller (foreground sync, background queueing and workers, a task giving up)
    records failures through here, so a failure always clears the document's points.
    """
    stale = ledger.record_failed(
        source_id,
        key,
        path=key,
        size=size,
        mtime_ns=mtime_ns,
        content_hash=content_hash,
        kind=str(kind),
        message=message,
    )
    if stale:
        delete(stale)
    document_ended(key, "failed", kind=str(kind), message=message)
    return len(stale)


def remove_vanished(
    ledger: Ledger,
    delete: DeletePoints,
    vanished: Iterable[DocumentState],
    *,
    on_deleted: Callable[[str], None] | None = None,
) -> RunCounts:
    """Mark documents whose file is gone deleted and delete their points."""
    counts = RunCounts()
    for before in vanished:
        stale = ledger.mark_deleted(before.id)
        if stale:
            delete(stale)
        counts += RunCounts(deleted=1, chunks_deleted=len(stale))
        document_ended(before.key, "deleted")
        if on_deleted is not None:
            on_deleted(before.key)
    return counts


def remove_orphans(ledger: Ledger, store: VectorStore, source_id: int, source_key: str) -> int:
    """Delete the points of a source that the ledger does not list; returns how many.

    Such points come from a run killed between its upsert and its ledger commit, for a
    file since deleted. A cheap count comes first; ids are compared only when the store
    and the ledger disagree.
    """
    if store.count() == ledger.count_chunks():
        return 0
    listed = set(ledger.all_point_ids(source_id))
    orphans = sorted(store.ids({SOURCE_KEY: source_key}) - listed)
    if orphans:
        log.warning("removing %d points of %s the ledger does not list", len(orphans), source_key)
        store.delete(orphans)
    return len(orphans)


# -- the JSON form of a write batch (what travels to the store's owner) -----------------


def batch_to_json(batch: WriteBatch) -> dict[str, Any]:
    """A write batch as JSON-serialisable data (see :mod:`tribrid.store.wire`)."""
    return {
        "source_id": batch.source_id,
        "reused": batch.reused,
        "encoded": batch.encoded,
        "points": [point_to_json(p) for p in batch.points],
        "payload_updates": [[pid, dict(payload)] for pid, payload in batch.payload_updates],
        "documents": [
            {
                "key": d.key,
                "size": d.size,
                "mtime_ns": d.mtime_ns,
                "content_hash": d.content_hash,
                "chunks": [[c.point_id, c.chunk_index, c.content_hash] for c in d.chunks],
            }
            for d in batch.documents
        ],
    }


def batch_from_json(data: Mapping[str, Any]) -> WriteBatch:
    """The inverse of :func:`batch_to_json`."""
    points = tuple(point_from_json(p, f"points[{n}]") for n, p in enumerate(data["points"]))
    return WriteBatch(
        source_id=int(data["source_id"]),
        points=points,
        payload_updates=tuple((pid, payload) for pid, payload in data["payload_updates"]),
        documents=tuple(
            DocumentRecord(
                key=d["key"],
                size=int(d["size"]),
                mtime_ns=int(d["mtime_ns"]),
                content_hash=d["content_hash"],
                chunks=tuple(ChunkRecord(pid, int(i), h) for pid, i, h in d["chunks"]),
            )
            for d in data["documents"]
        ),
        reused=int(data["reused"]),
        encoded=int(data.get("encoded", len(points))),
    )


__all__ = [
    "DocumentRecord",
    "DocumentWriter",
    "WriteBatch",
    "batch_from_json",
    "batch_to_json",
    "commit_batch",
    "encode_batch",
    "encode_chunks",
    "encode_points",
    "record_failure",
    "remove_orphans",
    "remove_vanished",
    "timed_upsert",
]
