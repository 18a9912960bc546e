"""Hybrid search over a tribrid store, with tunable fusion (LangChain-free; the
retriever in :mod:`tribrid.retrievers.hybrid` adds LangChain on top).

Each channel (dense, binary, SPLADE, BM25) is searched on its own for ``prefetch_k``
candidates under the filter, all in one batched store call, and the rankings are fused
on the client (see :mod:`tribrid.retrievers.fusion`); payloads are then fetched for the
fused top only. Fusing on the client is what lets every returned document carry each
channel's score and rank, lets the weights mean the same thing for every method, and
makes convex combination possible at all. The candidates are fused on the store's own
point keys (:class:`~tribrid.store.base.Candidates`): only the final ones become
strings, chunks and payload fetches, which keeps it close to the store's own fusion in
latency (see benchmarks/results/scale.md for both side by side). ``store_fusion=True`` sends one
prefetch-and-fuse query instead, for RRF and unweighted DBSF, when latency matters more
than the per-channel scores; it stays off by default because those scores are part of
every document's metadata.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, Self, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from tribrid.encoders import EncoderSet
from tribrid.retrievers.config import RetrieverConfig, load_config
from tribrid.retrievers.defaults import (
    DEFAULT_CHUNKS_PER_DOCUMENT,
    DEFAULT_FUSION,
    DEFAULT_WEIGHTING,
    DEFAULT_WEIGHTS,
    PREVIOUS_DEFAULTS,
    SPREAD_POWER,
    SPREAD_REFERENCE,
    default_feedback,
)
from tribrid.retrievers.feedback import Feedback, feedback_chunks, feedback_queries
from tribrid.retrievers.fusion import (
    FusionMethod,
    Normalization,
    Ranked,
    Weighting,
    fuse,
    query_weights,
    store_fusion,
)
from tribrid.retrievers.query import encode_query
from tribrid.retrievers.relevance import ChannelCalibration, parse_calibration, relevance
from tribrid.retrievers.rerank import TribridReranker
from tribrid.store.base import (
    AsyncSearch,
    AsyncWrite,
    Candidates,
    Channel,
    ChannelQuery,
    Hit,
    Point,
    StoreFilter,
    StoreQuery,
    VectorStore,
    search_candidates,
)
from tribrid.store.filters import validate_filter
from tribrid.store.points import (
    DOCUMENT_KEY,
    LANGCHAIN_ID_KEY,
    SOURCE_KEY,
    TEXT_KEY,
)

DEFAULT_CHANNELS: dict[Channel, float] = {Channel(c): w for c, w in DEFAULT_WEIGHTS.items()}
# What a call may override through ``invoke(query, k=..., filter=...)``.
CALL_OPTIONS = (
    "k",
    "filter",
    "score_threshold",
    "channels",
    "fusion",
    "rrf_k",
    "normalization",
    "prefetch_k",
    "weighting",
    "feedback",
    "oversampling",
    "store_fusion",
    "reranker",
    "rerank_candidates",
    "relevance_threshold",
    "chunks_per_document",
    "internal_metadata",
)
DEFAULT_RERANK_CANDIDATES = 30
#: The shipped models' spread calibration, for ``weighting="spread"``.
SPREAD: dict[str, Any] = {"reference": SPREAD_REFERENCE, "power": SPREAD_POWER}


@dataclass(frozen=True)
class RetrievedChunk:
    """One fused result (:func:`~tribrid.retrievers.hybrid.to_document` makes it a LangChain document).

    Attributes:
        id: Point id in the store.
        score: Fused score.
        payload: The point's payload (text and metadata).
        channel_scores: Each channel's own score, for the channels that returned it.
        channel_ranks: Each channel's 1-based rank, for the channels that returned it.
        rerank_score: The cross-encoder's score, when the retriever reranks.
        relevance: Relevance in [0, 1], comparable across queries (see
            :mod:`tribrid.retrievers.relevance`); None when the store fused several
            channels itself and returned no per-channel scores.
    """

    id: str
    score: float
    payload: Mapping[str, Any]
    channel_scores: dict[str, float] = field(default_factory=dict)
    channel_ranks: dict[str, int] = field(default_factory=dict)
    rerank_score: float | None = None
    relevance: float | None = None

    @property
    def document_id(self) -> str:
        """The id LangChain sees: the caller's id for texts added through LangChain."""
        given = self.payload.get(LANGCHAIN_ID_KEY)
        return str(given) if given is not None else self.id


class HybridSearch(BaseModel):
    """Hybrid search over a tribrid store, without LangChain: the search of
    :class:`~tribrid.retrievers.hybrid.TribridRetriever`, which adds LangChain's
    ``invoke``; ``tribrid search`` and the server use this class directly, so they never
    import LangChain.

    Every field, its meaning and its default are :class:`~tribrid.retrievers.hybrid.TribridRetriever`'s (documented
    there); :meth:`search` returns :class:`RetrievedChunk` records, which
    :func:`~tribrid.retrievers.hybrid.to_document` turns into LangChain documents.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    store: Any
    encoders: EncoderSet
    channels: dict[Channel, float] = Field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    # Every default is chosen on the seven-collection suite (benchmarks/results/suite.md).
    fusion: FusionMethod = DEFAULT_FUSION
    rrf_k: int = Field(default=60, ge=0)
    normalization: Normalization = Normalization.MINMAX
    prefetch_k: int | None = Field(default=None, ge=1)
    weighting: Weighting = DEFAULT_WEIGHTING
    feedback: Feedback | None = Field(default_factory=default_feedback)
    k: int = Field(default=10, ge=1)
    filter: Any = None
    score_threshold: float | None = None
    oversampling: float = Field(default=8.0, ge=1.0)
    store_fusion: bool = False
    reranker: TribridReranker | None = None
    rerank_candidates: int | None = Field(default=None, ge=1)
    relevance_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    relevance_calibration: dict[str, ChannelCalibration] | None = None
    chunks_per_document: int | None = Field(default=DEFAULT_CHUNKS_PER_DOCUMENT, ge=1)
    internal_metadata: bool = False

    _owned_store: bool = PrivateAttr(default=False)

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: Any) -> Any:
        if not isinstance(value, VectorStore):
            raise ValueError(
                f"store must be a tribrid store (EdgeStore or QdrantServerStore), got "
                f"{type(value).__name__}; open one with tribrid.store.open_store"
            )
        return value

    @field_validator("channels", mode="before")
    @classmethod
    def _parse_channels(cls, value: Any) -> dict[Channel, float]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, Mapping):
            value = dict.fromkeys(value, 1.0)
        parsed: dict[Channel, float] = {}
        for name, weight in value.items():
            try:
                channel = Channel(name)
            except ValueError as e:
                raise ValueError(
                    f"unknown channel {name!r}; valid channels: {[c.value for c in Channel]}"
                ) from e
            w = float(weight)
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"channel {channel.value!r} has weight {weight}; need >= 0")
            parsed[channel] = w
        if not any(parsed.values()):
            raise ValueError(
                "no channel to search: give at least one of dense, binary, splade, bm25 "
                "a weight above 0"
            )
        return parsed

    @field_validator("relevance_calibration", mode="before")
    @classmethod
    def _parse_calibration(cls, value: Any) -> dict[str, ChannelCalibration] | None:
        return None if value is None else parse_calibration(value)

    @field_validator("filter", mode="before")
    @classmethod
    def _check_filter(cls, value: Any) -> Any:
        # Checked here, so a bad filter fails when the retriever is made, not per query.
        return validate_filter(value)

    @model_validator(mode="after")
    def _check_combination(self) -> Self:
        if self.score_threshold is not None and self.fusion is FusionMethod.RRF:
            raise ValueError(
                "score_threshold cannot be used with fusion='rrf': RRF scores depend only "
                "on ranks and have no absolute meaning; use fusion='convex' (scores in "
                "[0, 1] with minmax) or 'dbsf', or drop the threshold"
            )
        if (
            self.store_fusion
            and self.relevance_threshold is not None
            and len([w for w in self.channels.values() if w > 0]) > 1
        ):
            raise ValueError(
                "relevance_threshold cannot be used with store_fusion=True over several "
                "channels: the store's fused hits carry no per-channel scores to compute "
                "relevance from; leave store_fusion off (the default)"
            )
        if self.store_fusion and (
            self.feedback is not None or self.weighting is not Weighting.FIXED
        ):
            raise ValueError(
                "store_fusion=True fuses in the store, which can neither weigh channels per "
                "query (weighting='spread') nor run a feedback round; pass weighting='fixed' "
                "and feedback=None with it, or leave store_fusion off"
            )
        if self.store_fusion:
            try:
                store_fusion(self.fusion)
            except ValueError as e:
                raise ValueError(
                    "store_fusion=True supports fusion 'rrf' and 'dbsf' only; Qdrant has "
                    "no convex fusion, so leave store_fusion off for 'convex'"
                ) from e
            weights = {w for w in self.channels.values() if w > 0}
            if self.fusion is FusionMethod.DBSF and weights != {1.0}:
                raise ValueError(
                    "store_fusion=True with fusion='dbsf' needs all channel weights 1 "
                    "(Qdrant's DBSF takes no weights); leave store_fusion off to weight DBSF"
                )
        return self

    # -- search --------------------------------------------------------------------

    def with_options(self, **options: Any) -> Self:
        """A copy with some fields changed, validated (``store`` and ``encoders`` shared).

        Raises:
            ValueError: An option is unknown or invalid.
        """
        unknown = set(options) - set(CALL_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown retriever option(s) {sorted(unknown)}; valid options: {list(CALL_OPTIONS)}"
            )
        if not options:
            return self
        # LangChain's own fields (tags, metadata) too, when this is the retriever.
        kept = [*CALL_OPTIONS, "relevance_calibration"]
        kept += [name for name in ("tags", "metadata") if name in type(self).model_fields]
        fields = {name: getattr(self, name) for name in kept}
        # The default prefetch follows k unless it was set.
        return type(self)(store=self.store, encoders=self.encoders, **{**fields, **options})

    def search(self, query: str, **options: Any) -> list[RetrievedChunk]:
        """Search and fuse, returning chunks with their fused and per-channel scores.

        Args:
            query: The query text.
            **options: Per-call overrides of the fields in :data:`CALL_OPTIONS`.
        """
        params = self.with_options(**options)
        if params.reranker is None:
            return params._search(query, params.k)
        wanted = max(params.k, params.rerank_candidates or DEFAULT_RERANK_CANDIDATES)
        chunks = params._search(query, wanted)
        return params._reranked(chunks, params.reranker.score(query, _texts(chunks)))

    async def asearch(self, query: str, **options: Any) -> list[RetrievedChunk]:
        """:meth:`search` for an event loop, which it never blocks.

        Query encoding (and reranking) run in a worker thread, as they are CPU work; the
        store is asked through its async calls (see
        :class:`~tribrid.store.base.AsyncSearch`).
        """
        params = self.with_options(**options)
        if params.reranker is None:
            return await params._asearch(query, params.k)
        wanted = max(params.k, params.rerank_candidates or DEFAULT_RERANK_CANDIDATES)
        chunks = await params._asearch(query, wanted)
        scores = await asyncio.to_thread(params.reranker.score, query, _texts(chunks))
        return params._reranked(chunks, scores)

    def _reranked(
        self, chunks: Sequence[RetrievedChunk], scores: Sequence[float]
    ) -> list[RetrievedChunk]:
        reranked = [replace(c, rerank_score=s) for c, s in zip(chunks, scores, strict=True)]
        # sorted() is stable: equal rerank scores keep the fused order.
        reranked.sort(key=lambda c: -(c.rerank_score or 0.0))
        return reranked[: self.k]

    def _search(self, query: str, limit: int) -> list[RetrievedChunk]:
        queries = self._tiered(encode_query(self.encoders, query, self._active()))
        requests = self._requests(queries, limit)
        if self._store_fuses(requests):
            return self._store_fused(self.store.query(requests[0]), limit)
        if self._feeds_back(queries):
            queries, found = self._with_feedback(queries, requests, limit)
        else:
            found = search_candidates(self.store, requests)
        selection = self._selection(queries, found, limit)
        while page := selection.page():
            selection.take(self.store.retrieve([c.id for c in page]))
        return selection.chunks

    async def _asearch(self, query: str, limit: int) -> list[RetrievedChunk]:
        queries = self._tiered(
            await asyncio.to_thread(encode_query, self.encoders, query, self._active())
        )
        requests = self._requests(queries, limit)
        store = async_store(self.store)
        if self._store_fuses(requests):
            return self._store_fused(await store.aquery(requests[0]), limit)
        if self._feeds_back(queries):
            queries, found = await self._awith_feedback(queries, requests, limit)
        else:
            found = await _acandidates(self.store, requests)
        selection = self._selection(queries, found, limit)
        while page := selection.page():
            selection.take(await store.aretrieve([c.id for c in page]))
        return selection.chunks

    def _with_feedback(
        self, queries: list[ChannelQuery], requests: list[StoreQuery], limit: int
    ) -> tuple[list[ChannelQuery], list[Candidates]]:
        """Search, feed the first fusion's top back into the queries, search again."""
        results: Sequence[Sequence[Hit]] = self.store.query_batch(requests)
        fused = self._fused(queries, results)
        wanted = self._feedback_candidates(fused)
        second = self._feedback_requests(
            queries, results, fused, self.store.retrieve(wanted), limit
        )
        if second is not None:
            new, again = second
            queries, results = self._merged(queries, results, new, self.store.query_batch(again))
        return list(queries), [_as_candidates(hits) for hits in results]

    async def _awith_feedback(
        self, queries: list[ChannelQuery], requests: list[StoreQuery], limit: int
    ) -> tuple[list[ChannelQuery], list[Candidates]]:
        """:meth:`_with_feedback`, awaitable."""
        store = async_store(self.store)
        results: Sequence[Sequence[Hit]] = await store.aquery_batch(requests)
        fused = self._fused(queries, results)
        payloads = await store.aretrieve(self._feedback_candidates(fused))
        second = await asyncio.to_thread(
            self._feedback_requests, queries, results, fused, payloads, limit
        )
        if second is not None:
            new, again = second
            queries, results = self._merged(queries, results, new, await store.aquery_batch(again))
        return list(queries), [_as_candidates(hits) for hits in results]

    def _tiered(self, queries: list[ChannelQuery]) -> list[ChannelQuery]:
        """The queries with ``dense`` searched as ``binary`` on a store of the binary tier.

        Such a store keeps its float vectors on disk for rescoring only
        (``CollectionSchema.dense_on_disk``); an exact float search would read them all.
        A query that names ``binary`` itself keeps both as asked.
        """
        schema = getattr(self.store, "schema", None)
        if not getattr(schema, "dense_on_disk", False):
            return queries
        if any(cq.channel is Channel.BINARY for cq in queries):
            return queries
        return [
            replace(cq, channel=Channel.BINARY) if cq.channel is Channel.DENSE else cq
            for cq in queries
        ]

    def _active(self) -> dict[Channel, float]:
        return {c: w for c, w in self.channels.items() if w > 0}

    def _store_fuses(self, requests: Sequence[StoreQuery]) -> bool:
        """Whether the store answers with the final hits (it fused, or there is one channel
        under ``store_fusion``), rather than with per-channel candidates."""
        return len(requests) == 1 and (self.store_fusion or len(requests[0].channels) > 1)

    def _requests(self, queries: Sequence[ChannelQuery], limit: int) -> list[StoreQuery]:
        """The store searches of one retrieval: one fused query, or one per channel.

        With ``store_fusion`` the store answers in one query: the fused hits, or a lone
        channel's own hits and scores.
        """
        prefetch = self.prefetch_k if self.prefetch_k is not None else max(100, 10 * self.k)
        prefetch = max(prefetch, limit)  # fewer candidates could return fewer than asked
        if self.store_fusion:
            return [
                StoreQuery(
                    channels=tuple(queries),
                    # Grouping drops chunks of documents already full: ask for more.
                    limit=prefetch if self.chunks_per_document else limit,
                    prefetch_limit=prefetch,
                    fusion=store_fusion(self.fusion),
                    # Qdrant's RRF scores rank r (from 1) as 1 / (r + k - 1); k + 1 makes
                    # unweighted scores equal to the client's 1 / (k + r).
                    rrf_k=self.rrf_k + 1,
                    filter=self.filter,
                    oversampling=self.oversampling,
                )
            ]
        if self.fusion is FusionMethod.RRF and len(queries) == 1 and self._takes_all():
            # One channel under RRF: the fused order is that channel's, so limit suffices.
            prefetch = limit
        # Payloads are fetched afterwards for the fused top only, not for every candidate.
        vectors = self.feedback is not None and self.feedback.dense > 0
        return [
            StoreQuery(
                channels=(cq,),
                limit=prefetch,
                filter=self.filter,
                oversampling=self.oversampling,
                with_payload=False,
                # Rocchio feedback moves the dense query toward the top hits' vectors.
                with_vectors=vectors and cq.channel in (Channel.DENSE, Channel.BINARY),
            )
            for cq in queries
        ]

    # -- pseudo-relevance feedback ---------------------------------------------------

    def _feeds_back(self, queries: Sequence[ChannelQuery]) -> bool:
        """Whether this search runs a feedback round (some searched channel changes)."""
        if self.feedback is None:
            return False
        changed = self.feedback.channels()
        return any(cq.channel in changed for cq in queries)

    def _fused(
        self, queries: Sequence[ChannelQuery], results: Sequence[Sequence[Hit]]
    ) -> list[tuple[str, float]]:
        ranked = {
            cq.channel.value: [(h.id, h.score) for h in hits]
            for cq, hits in zip(queries, results, strict=True)
        }
        weights = query_weights(
            ranked, {cq.channel.value: cq.weight for cq in queries}, self.weighting, **SPREAD
        )
        return fuse(
            self.fusion, ranked, weights=weights, rrf_k=self.rrf_k, normalization=self.normalization
        )

    def _feedback_candidates(self, fused: Sequence[tuple[str, float]]) -> list[str]:
        """Fused ids whose payloads are fetched to find the top documents' best chunks."""
        assert self.feedback is not None
        return [i for i, _ in fused[: 4 * self.feedback.documents]]

    def _feedback_requests(
        self,
        queries: Sequence[ChannelQuery],
        results: Sequence[Sequence[Hit]],
        fused: Sequence[tuple[str, float]],
        payloads: Sequence[Hit],
        limit: int,
    ) -> tuple[list[ChannelQuery], list[StoreQuery]] | None:
        """The second-round queries and their searches; None when nothing changes."""
        assert self.feedback is not None
        by_id = {h.id: h.payload for h in payloads}
        document_of = {
            i: (p.get(SOURCE_KEY), p.get(DOCUMENT_KEY))
            for i, p in by_id.items()
            if p.get(DOCUMENT_KEY) is not None
        }
        chosen = feedback_chunks(
            [(i, s) for i, s in fused if i in by_id], document_of, self.feedback.documents
        )
        if not chosen:
            return None
        dense: dict[str, Sequence[float]] = {}
        for hits in results:
            for h in hits:
                if h.dense is not None:
                    dense.setdefault(h.id, h.dense)
        new = feedback_queries(
            self.encoders,
            queries,
            self.feedback,
            texts=[str(by_id[i].get(TEXT_KEY, "")) for i in chosen],
            dense_vectors=[dense[i] for i in chosen if i in dense],
        )
        if not new:
            return None
        requests = [replace(r, with_vectors=False) for r in self._requests(new, limit)]
        return new, requests

    def _merged(
        self,
        queries: Sequence[ChannelQuery],
        results: Sequence[Sequence[Hit]],
        new: Sequence[ChannelQuery],
        second: Sequence[Sequence[Hit]],
    ) -> tuple[list[ChannelQuery], list[Sequence[Hit]]]:
        """The first round's channels with the fed-back ones' queries and hits replaced."""
        replaced = {cq.channel: (cq, hits) for cq, hits in zip(new, second, strict=True)}
        out_queries: list[ChannelQuery] = []
        out_results: list[Sequence[Hit]] = []
        for cq, hits in zip(queries, results, strict=True):
            cq, hits = replaced.get(cq.channel, (cq, hits))
            out_queries.append(cq)
            out_results.append(hits)
        return out_queries, out_results

    def _takes_all(self) -> bool:
        """Whether every fused candidate is kept until ``limit`` (no relevance or
        per-document cut that could skip some)."""
        return self.relevance_threshold is None and self.chunks_per_document is None

    def _selection(
        self, queries: Sequence[ChannelQuery], results: Sequence[Candidates], limit: int
    ) -> _Selection:
        """The fused candidates of a client-side fusion, ready to be cut and fetched.

        Fused on the store's point keys: the fusion functions only hash and compare ids,
        so any key the store hands over works as well as the id string.
        """
        ranked = {cq.channel.value: found for cq, found in zip(queries, results, strict=True)}
        pairs = {
            c: cast(Ranked, list(zip(r.keys, r.scores, strict=True))) for c, r in ranked.items()
        }
        weights = query_weights(
            pairs, {cq.channel.value: cq.weight for cq in queries}, self.weighting, **SPREAD
        )
        fused = fuse(
            self.fusion,
            pairs,
            weights=weights,
            rrf_k=self.rrf_k,
            normalization=self.normalization,
        )
        if self.score_threshold is not None:
            fused = [(i, s) for i, s in fused if s >= self.score_threshold]
        return _Selection(
            fused,
            ranked,
            limit,
            # Relevance weighs the channels as configured, the same for every query.
            weights={cq.channel.value: cq.weight for cq in queries},
            calibration=self.relevance_calibration,
            relevance_threshold=self.relevance_threshold,
            per_document=self.chunks_per_document,
        )

    def _store_fused(self, hits: Sequence[Hit], limit: int) -> list[RetrievedChunk]:
        active = self._active()
        lone = next(iter(active)).value if len(active) == 1 else None
        per_document: Counter[tuple[Any, ...]] = Counter()
        chunks = []
        for h in hits:
            if self.score_threshold is not None and h.score < self.score_threshold:
                continue
            # One channel: the store returned that channel's own scores.
            rel = (
                relevance({lone: h.score}, {lone: 1.0}, self.relevance_calibration)
                if lone is not None
                else None
            )
            if self.relevance_threshold is not None and (
                rel is None or rel < self.relevance_threshold
            ):
                continue
            if not _admitted(per_document, self.chunks_per_document, h.id, h.payload):
                continue
            chunks.append(RetrievedChunk(id=h.id, score=h.score, payload=h.payload, relevance=rel))
            if len(chunks) >= limit:
                break
        return chunks

    @classmethod
    def from_config(
        cls,
        config: RetrieverConfig | str | os.PathLike[str],
        *,
        store: Any,
        encoders: EncoderSet,
        **overrides: Any,
    ) -> Self:
        """A retriever with the options of a configuration file (see ``tribrid tune``).

        Args:
            config: A :class:`~tribrid.retrievers.config.RetrieverConfig` or its path.
            store: The open store.
            encoders: The encoders the index was built with.
            **overrides: Options that win over the file's (``k``, ``filter`` ...).

        Raises:
            ConfigError: The file is missing or invalid.
        """
        options = {**load_config(config).options(), **overrides}
        return cls(store=store, encoders=encoders, **options)

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Close the store if this retriever opened it (see :func:`tribrid.as_retriever`)."""
        if self._owned_store:
            self._owned_store = False
            self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Selection:
    """Walks the fused candidates best first, keeping those that pass the cuts.

    Candidates are the store's point keys until walked: each channel's score and rank,
    the relevance and the id string are worked out for the candidates walked only,
    rather than for every candidate: a few hundred Python objects per query were most
    of the client-side fusion's cost. Payloads are fetched a page at a time
    (:meth:`page`, then :meth:`take`); without a relevance or per-document cut, one page
    is the whole answer.
    """

    def __init__(
        self,
        fused: Sequence[tuple[Hashable, float]],
        ranked: Mapping[str, Candidates],
        limit: int,
        *,
        weights: Mapping[str, float],
        calibration: Mapping[str, ChannelCalibration] | None,
        relevance_threshold: float | None,
        per_document: int | None,
    ) -> None:
        self._fused = fused
        self._ranked = ranked
        self._positions: dict[str, dict[Hashable, int]] = {}
        first = next(iter(ranked.values()), None)
        self._to_id = first.to_id if first is not None else str
        self._limit = limit
        self._weights = weights
        self._calibration = calibration
        self._threshold = relevance_threshold
        self._per_document = per_document
        self._at = 0
        self._pending: list[RetrievedChunk] = []
        self._counts: Counter[tuple[Any, ...]] = Counter()
        self.chunks: list[RetrievedChunk] = []

    def page(self) -> list[RetrievedChunk]:
        """The next candidates whose payloads are needed; empty when done."""
        wanted = self._limit - len(self.chunks)
        if wanted <= 0:
            return []
        if self._per_document is not None:
            wanted = max(2 * wanted, 16)  # some will belong to documents already full
        page: list[RetrievedChunk] = []
        while self._at < len(self._fused) and len(page) < wanted:
            key, score = self._fused[self._at]
            self._at += 1
            chunk = self._scored(key, score)
            if self._threshold is not None and (chunk.relevance or 0.0) < self._threshold:
                continue
            page.append(chunk)
        self._pending = page
        return page

    def take(self, payloads: Sequence[Hit]) -> None:
        """Keep the pending candidates, in order, with the payloads fetched for them."""
        by_id = {hit.id: hit.payload for hit in payloads}
        for chunk in self._pending:
            payload = by_id.get(chunk.id)
            if payload is None:
                continue  # deleted between the search and the fetch
            if not _admitted(self._counts, self._per_document, chunk.id, payload):
                continue
            self.chunks.append(replace(chunk, payload=payload))
            if len(self.chunks) >= self._limit:
                break
        self._pending = []

    def _position(self, channel: str) -> dict[Hashable, int]:
        """Each key's 0-based position in ``channel``'s list: its first, i.e. best, one."""
        found = self._positions.get(channel)
        if found is None:
            keys = self._ranked[channel].keys
            # Later entries overwrite earlier ones, so walk from the back.
            found = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True))
            self._positions[channel] = found
        return found

    def _scored(self, key: Hashable, score: float) -> RetrievedChunk:
        scores: dict[str, float] = {}
        ranks: dict[str, int] = {}
        for channel, found in self._ranked.items():
            at = self._position(channel).get(key)
            if at is None:
                continue
            scores[channel] = float(found.scores[at])
            ranks[channel] = at + 1
        return RetrievedChunk(
            id=self._to_id(key),
            score=score,
            payload={},
            channel_scores=scores,
            channel_ranks=ranks,
            relevance=relevance(scores, self._weights, self._calibration),
        )


def _as_candidates(hits: Sequence[Hit]) -> Candidates:
    """Hits as candidates keyed by their ids."""
    return Candidates([h.id for h in hits], [h.score for h in hits])


async def _acandidates(store: Any, queries: Sequence[StoreQuery]) -> list[Candidates]:
    """:func:`~tribrid.store.base.search_candidates` for an event loop."""
    acandidates = getattr(store, "acandidates", None)  # cheaper than an isinstance check
    if acandidates is not None:
        found: list[Candidates] = await acandidates(queries)
        return found
    results = await async_store(store).aquery_batch(queries)
    return [Candidates([h.id for h in hits], [h.score for h in hits]) for hits in results]


def _admitted(
    counts: Counter[tuple[Any, ...]],
    per_document: int | None,
    point_id: str,
    payload: Mapping[str, Any],
) -> bool:
    """Whether a chunk fits under ``per_document`` chunks of its document (and count it).

    A document is its source and key; a point without them is a document of its own.
    """
    if per_document is None:
        return True
    source, document = payload.get(SOURCE_KEY), payload.get(DOCUMENT_KEY)
    key = (source, document) if document is not None else ("point", point_id)
    if counts[key] >= per_document:
        return False
    counts[key] += 1
    return True


def _texts(chunks: Sequence[RetrievedChunk]) -> list[str]:
    return [str(c.payload.get(TEXT_KEY, "")) for c in chunks]


class _ThreadedStore:
    """The async calls of a store without them (a third-party or remote store): each
    sync call in a worker thread, so the event loop never waits on it."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def aquery(self, query: StoreQuery) -> list[Hit]:
        hits: list[Hit] = await asyncio.to_thread(self._store.query, query)
        return hits

    async def aquery_batch(self, queries: Sequence[StoreQuery]) -> list[list[Hit]]:
        hits: list[list[Hit]] = await asyncio.to_thread(self._store.query_batch, queries)
        return hits

    async def aretrieve(self, point_ids: Sequence[str]) -> list[Hit]:
        hits: list[Hit] = await asyncio.to_thread(self._store.retrieve, point_ids)
        return hits

    async def aupsert(self, points: Sequence[Point]) -> None:
        await asyncio.to_thread(self._store.upsert, points)

    async def adelete(self, point_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self._store.delete, point_ids)

    async def adelete_by_filter(self, filter: StoreFilter) -> None:
        await asyncio.to_thread(self._store.delete_by_filter, filter)


class AsyncStore(AsyncSearch, AsyncWrite, Protocol):
    """A store's async reads and writes together."""


def async_store(store: Any) -> AsyncStore:
    """``store`` itself when it has async reads and writes, else a threaded stand-in."""
    if isinstance(store, AsyncSearch) and isinstance(store, AsyncWrite):
        return store
    return _ThreadedStore(store)


__all__ = [
    "CALL_OPTIONS",
    "DEFAULT_RERANK_CANDIDATES",
    "PREVIOUS_DEFAULTS",
    "SPREAD",
    "AsyncStore",
    "HybridSearch",
    "RetrievedChunk",
    "async_store",
]
