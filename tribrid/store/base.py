"""The collection schema, the point and query records, and the store protocol.

Every backend stores one collection with three named vectors:

* ``dense``: float vectors (cosine), with binary quantization for a fast first stage;
* ``splade``: learned sparse vectors;
* ``bm25``: term-frequency sparse vectors, scored with Qdrant's IDF modifier.

Each point's payload holds the chunk's text and metadata (keys in
:mod:`tribrid.store.points`), with payload indexes on :data:`PAYLOAD_INDEXES`: every key
the README says you can filter on, so filters never scan and a Qdrant server in strict
mode accepts them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from tribrid.encoders.base import SparseVector
from tribrid.store.points import FILTERABLE_KEYS, PayloadIndex

DENSE = "dense"
SPLADE = "splade"
BM25 = "bm25"
#: The payload index of each key, created with the collection and added to existing
#: ones on open: the keys of tribrid's own bookkeeping and every documented filter key.
PAYLOAD_INDEXES: Mapping[str, PayloadIndex] = FILTERABLE_KEYS
#: The keys every backend indexes.
INDEXED_PAYLOAD_KEYS = tuple(PAYLOAD_INDEXES)


class Channel(StrEnum):
    """A retrieval channel: one named vector, searched one way."""

    DENSE = "dense"
    BINARY = "binary"  # the dense vector, through its binary-quantized codes then rescored
    SPLADE = "splade"
    BM25 = "bm25"

    @property
    def vector_name(self) -> str:
        """Name of the stored vector this channel searches."""
        return DENSE if self in (Channel.DENSE, Channel.BINARY) else self.value


class BinaryEncoding(StrEnum):
    """Bits per dimension of the binary-quantized dense codes."""

    ONE_BIT = "1bit"
    ONE_AND_HALF_BITS = "1.5bit"
    TWO_BITS = "2bit"


class QueryEncoding(StrEnum):
    """How a query is encoded against binary codes (asymmetric when not ``binary``)."""

    DEFAULT = "default"
    BINARY = "binary"
    SCALAR4 = "scalar4"
    SCALAR8 = "scalar8"


class Fusion(StrEnum):
    """Fusion the store can run itself over per-channel prefetches."""

    RRF = "rrf"
    DBSF = "dbsf"


@dataclass(frozen=True)
class CollectionSchema:
    """What a collection was built with. Checked on every open.

    Attributes:
        name: Collection name.
        dense_size: Dimension of the dense vectors.
        dense_model: Identity of the dense model.
        splade_model: Identity of the SPLADE model.
        bm25_model: Identity of the BM25 scheme (tokenizer, k, b, avg_len).
        binary_encoding: Encoding of the binary-quantized dense codes.
        query_encoding: Query encoding against the binary codes.
        dense_on_disk: The binary tier: keep the float dense vectors on disk, read only
            to rescore what the binary codes found, while the codes stay pinned in RAM
            and no HNSW graph is built for them (a search scans the codes). Searches
            for the ``dense`` channel then go through the codes as ``binary`` does (an
            exact float search would read the floats from disk). Off: the floats are
            memory-mapped and loaded into the page cache on open.
    """

    name: str
    dense_size: int
    dense_model: str
    splade_model: str
    bm25_model: str
    binary_encoding: BinaryEncoding = BinaryEncoding.TWO_BITS
    query_encoding: QueryEncoding = QueryEncoding.SCALAR8
    dense_on_disk: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("CollectionSchema.name must not be empty")
        if self.dense_size <= 0:
            raise ValueError(f"CollectionSchema.dense_size must be > 0, got {self.dense_size}")

    def fingerprint(self) -> dict[str, Any]:
        """The fields that must match between the settings and an existing collection."""
        return {
            "dense_size": self.dense_size,
            "dense_model": self.dense_model,
            "splade_model": self.splade_model,
            "bm25_model": self.bm25_model,
        }


@dataclass(frozen=True)
class Point:
    """One chunk as stored: id, the three vectors, and the payload."""

    id: str
    dense: Sequence[float]
    splade: SparseVector
    bm25: SparseVector
    payload: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("Point.id must not be empty")
        if len(self.dense) == 0:
            raise ValueError(f"Point {self.id} has an empty dense vector")


# A backend-neutral payload filter: ``{"key": value}`` for equality, ``{"key": [a, b]}``
# for any-of, ``{"key": {"gte": 1, "lt": 5}}`` for a range. All entries must hold.
MetadataFilter = Mapping[str, Any]

# What every ``filter`` argument accepts: the simple form above, or a raw Qdrant filter
# passed through: a ``qdrant_client.models.Filter`` or its JSON form
# ``{"must": [...], "should": [...], "must_not": [...], "min_should": {...}}`` (both
# backends), or a ``qdrant_edge.Filter`` (embedded backend only). The language is
# defined in :mod:`tribrid.store.filters`.
StoreFilter = MetadataFilter | Any


@dataclass(frozen=True)
class ChannelQuery:
    """The query vector of one channel."""

    channel: Channel
    vector: Sequence[float] | SparseVector
    weight: float = 1.0


@dataclass(frozen=True)
class StoreQuery:
    """A search, over one channel or fused over several.

    Attributes:
        channels: One query per channel. With one, that channel's ranking is returned;
            with several, the store fuses their prefetches with ``fusion``.
        limit: How many hits to return.
        prefetch_limit: Candidates taken from each channel before fusion.
        fusion: Server-side fusion when there is more than one channel.
        rrf_k: The RRF constant.
        filter: Payload filter applied in every channel (:data:`StoreFilter`).
        oversampling: For the binary channel: candidates taken from the codes, as a
            multiple of the limit, before rescoring with the float vectors.
        with_payload: Return payloads with the hits.
        with_vectors: Return each hit's dense vector (for maximal marginal relevance).
    """

    channels: tuple[ChannelQuery, ...]
    limit: int = 10
    prefetch_limit: int = 100
    fusion: Fusion = Fusion.RRF
    rrf_k: int = 60
    filter: StoreFilter | None = None
    oversampling: float = 8.0
    with_payload: bool = True
    with_vectors: bool = False

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError("StoreQuery needs at least one channel")
        if self.limit <= 0 or self.prefetch_limit <= 0:
            raise ValueError("StoreQuery.limit and prefetch_limit must be > 0")
        if self.oversampling < 1.0:
            raise ValueError(f"StoreQuery.oversampling must be >= 1, got {self.oversampling}")


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        id: Point id.
        score: The query's score (0 for points fetched by id).
        payload: The payload, when asked for.
        dense: The stored dense vector, when asked for (``StoreQuery.with_vectors``).
    """

    id: str
    score: float
    payload: Mapping[str, Any] = field(default_factory=dict)
    dense: Sequence[float] | None = None


@dataclass(frozen=True, slots=True)
class Candidates:
    """One channel's hits as the store holds them: point keys and scores, best first.

    What client-side fusion needs from each channel, and no more: no payloads, and ids
    in the backend's own form (``uuid.UUID`` from Qdrant Edge, ``str`` from a server),
    so a few hundred candidates are never each turned into a :class:`Hit`. Keys are
    hashable and equal for the same point, and cheap to hash (Qdrant Edge's are the
    UUIDs' integers: ``uuid.UUID`` hashes in Python code); ``to_id(key)`` is the point id.

    Attributes:
        keys: The hits' point keys, best first.
        scores: Their scores, in the same order.
        to_id: Turns a key into its point id string.
    """

    keys: Sequence[Hashable]
    scores: Sequence[float]
    to_id: Callable[[Any], str] = str

    def __len__(self) -> int:
        return len(self.keys)


@runtime_checkable
class VectorStore(Protocol):
    """A Qdrant collection holding tribrid points.

    The backends are listed in :data:`tribrid.store.BACKENDS`; open one by name with
    :func:`tribrid.store.open_store`.
    """

    #: Whether one process at a time may open the store. Callers that write from
    #: several processes (the Celery workers) then route writes through one owner.
    single_writer: ClassVar[bool]

    @classmethod
    def open(
        cls,
        schema: CollectionSchema,
        *,
        path: Path | None = None,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        recreate: bool = False,
    ) -> Self:
        """Open (or create) the collection described by ``schema``.

        Every backend takes the same options and ignores those it has no use for, so
        one call opens any of them.

        Args:
            schema: What the collection must hold; checked against an existing one.
            path: Folder of a store kept on local disk.
            url: Address of a store behind a server.
            api_key: Key of that server, if it needs one.
            timeout: Request timeout in seconds, for a server.
            recreate: Delete the existing collection first.

        Raises:
            ValueError: An option the backend needs is missing.
        """
        ...

    @property
    def schema(self) -> CollectionSchema:
        """The schema the store was opened with (and validated against)."""
        ...

    def upsert(self, points: Sequence[Point]) -> None:
        """Insert or overwrite points. Idempotent: the same points twice leave one copy."""
        ...

    def set_payload(self, point_id: str, payload: Mapping[str, Any]) -> None:
        """Merge ``payload`` into the payload of an existing point."""
        ...

    def delete(self, point_ids: Sequence[str]) -> None:
        """Delete points by id; ids that do not exist are ignored."""
        ...

    def delete_by_filter(self, filter: StoreFilter) -> None:
        """Delete every point whose payload matches ``filter``."""
        ...

    def query(self, query: StoreQuery) -> list[Hit]:
        """Search one channel, or several fused."""
        ...

    def query_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        """Run several searches in one call; results in the order of ``queries``."""
        ...

    def retrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        """Fetch points by id (score 0), in no particular order; missing ids are skipped."""
        ...

    def count(self, filter: StoreFilter | None = None) -> int:
        """Number of points, optionally only those matching ``filter``."""
        ...

    def ids(self, filter: StoreFilter | None = None) -> set[str]:
        """Ids of all points, optionally only those matching ``filter``."""
        ...

    def flush(self) -> None:
        """Make writes durable and searchable; call it at the end of a run.

        A backend may build its indexes here, so it can take a while on a large store.
        """
        ...

    def close(self) -> None:
        """Release the store; the object cannot be used afterwards."""
        ...


@runtime_checkable
class CandidateSearch(Protocol):
    """A store that hands back per-channel candidates without building hits.

    Both built-in backends have it; for any other store, :func:`search_candidates`
    falls back to :meth:`VectorStore.query_batch`.
    """

    def candidates(self, queries: Sequence[StoreQuery]) -> list[Candidates]:
        """Run several single-channel searches in one call, without payloads or vectors.

        Results in the order of ``queries``; each query's ``with_payload`` and
        ``with_vectors`` are ignored.
        """
        ...

    async def acandidates(self, queries: Sequence[StoreQuery]) -> list[Candidates]:
        """:meth:`candidates`, awaitable."""
        ...


def search_candidates(store: VectorStore, queries: Sequence[StoreQuery]) -> list[Candidates]:
    """Each query's candidates: through :class:`CandidateSearch` when the store has it,
    else from :meth:`VectorStore.query_batch` (ids are then the keys)."""
    # getattr, not isinstance: a runtime protocol check costs more than fusing.
    candidates = getattr(store, "candidates", None)
    if candidates is not None:
        found: list[Candidates] = candidates(queries)
        return found
    return [
        Candidates([h.id for h in hits], [h.score for h in hits])
        for hits in store.query_batch(queries)
    ]


@runtime_checkable
class AsyncSearch(Protocol):
    """The read calls of a store, for an event loop: they never block it."""

    async def aquery(self, query: StoreQuery) -> list[Hit]:
        """:meth:`VectorStore.query`, awaitable."""
        ...

    async def aquery_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        """:meth:`VectorStore.query_batch`, awaitable."""
        ...

    async def aretrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        """:meth:`VectorStore.retrieve`, awaitable."""
        ...


@runtime_checkable
class AsyncWrite(Protocol):
    """The write calls of a store, for an event loop: they never block it.

    The embedded store runs them on the one thread its async reads use, so an async
    caller never touches the shard from two threads at once.
    """

    async def aupsert(self, points: Sequence[Point]) -> None:
        """:meth:`VectorStore.upsert`, awaitable."""
        ...

    async def adelete(self, point_ids: Sequence[str]) -> None:
        """:meth:`VectorStore.delete`, awaitable."""
        ...

    async def adelete_by_filter(self, filter: StoreFilter) -> None:
        """:meth:`VectorStore.delete_by_filter`, awaitable."""
        ...
