"""Per-channel candidate lists of every query, searched once and fused many times.

Evaluating a fusion or tuning one never needs the store again once each channel's
ranking of each query is known: :func:`collect_candidates` searches every channel once
per query (timing the query encoding and the search), and :func:`fused_documents` turns
the cached lists into a document ranking for any fusion setting, with the same
:func:`~tribrid.retrievers.fusion.fuse` the retriever runs.

Documents are chunked, so chunk hits are aggregated into document scores by their
best chunk (max): a document ranks where its best chunk ranks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tribrid.encoders import EncoderSet
from tribrid.ledger.base import Ledger
from tribrid.retrievers.config import RetrieverSettings
from tribrid.retrievers.feedback import feedback_chunks, feedback_queries
from tribrid.retrievers.fusion import fuse, query_weights
from tribrid.retrievers.hybrid import SPREAD
from tribrid.retrievers.query import CHANNEL_ENCODER, encode_query
from tribrid.store.base import Channel, ChannelQuery, StoreQuery, VectorStore
from tribrid.store.points import TEXT_KEY

Hits = list[tuple[str, float]]


Advance = Callable[[int], None]


@dataclass
class FeedbackLists:
    """The second round of one feedback setting, per query.

    Attributes:
        ranked: ``{channel: {query id: hits}}`` of the channels feedback changed.
        ms: ``{query id: milliseconds}`` the feedback round added (first fusion,
            payload fetch, new queries, their searches).
    """

    ranked: dict[str, dict[str, Hits]] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Candidates:
    """Every channel's chunk ranking of every query, with timings.

    Attributes:
        ranked: ``{channel: {query id: [(point id, score), ...]}}``, best first.
        search_ms: ``{channel: {query id: milliseconds}}`` of the store search.
        encode_ms: ``{encoder: {query id: milliseconds}}`` of the query encoding.
        dense_queries: The dense query vectors (for binary calibration).
        encoded: Each query's channel queries (for feedback rounds).
        depth: How many chunks each channel returned per query.
        feedback: Second-round lists of each feedback setting, by its JSON form (see
            :func:`collect_feedback`).
    """

    ranked: dict[str, dict[str, Hits]] = field(default_factory=dict)
    search_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    encode_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    dense_queries: dict[str, np.ndarray] = field(default_factory=dict)
    encoded: dict[str, list[ChannelQuery]] = field(default_factory=dict)
    depth: int = 0
    feedback: dict[str, FeedbackLists] = field(default_factory=dict)

    def latency_ms(self, query_id: str, channels: Iterable[str]) -> float:
        """Encoding plus search time of one query over ``channels`` (each encoder once)."""
        channels = list(channels)
        encoders = {CHANNEL_ENCODER[Channel(c)] for c in channels}
        return sum(self.encode_ms[e][query_id] for e in encoders) + sum(
            self.search_ms[c][query_id] for c in channels
        )


def point_documents(ledger: Ledger, source_key: str) -> dict[str, str]:
    """``{point id: document key}`` of every chunk the ledger lists for a source."""
    source_id = ledger.ensure_source(
        source_key, kind=source_key.split(":", 1)[0], location=source_key
    )
    states = {s.id: s.key for s in ledger.document_states(source_id) if s.chunk_count > 0}
    ids = list(states)
    mapping: dict[str, str] = {}
    for start in range(0, len(ids), 1000):
        for doc_id, records in ledger.chunks_of_many(ids[start : start + 1000]).items():
            for record in records:
                mapping[record.point_id] = states[doc_id]
    return mapping


def collect_candidates(
    store: VectorStore,
    encoders: EncoderSet,
    queries: Mapping[str, str],
    channels: Sequence[Channel],
    *,
    depth: int = 300,
    oversampling: float = 8.0,
    advance: Advance | None = None,
) -> Candidates:
    """Encode every query once per encoder and search each channel once, timed.

    Args:
        store: The open store.
        encoders: The encoders the index was built with.
        queries: ``{query id: text}``.
        channels: Channels to search.
        depth: Chunks returned per channel and query.
        oversampling: For the binary channel.
        advance: Called with 1 after each query.
    """
    result = Candidates(depth=depth)
    needed = {CHANNEL_ENCODER[c] for c in channels}
    for name in needed:
        result.encode_ms[name] = {}
    for channel in channels:
        result.ranked[channel.value] = {}
        result.search_ms[channel.value] = {}
    for query_id, text in queries.items():
        timings: dict[str, float] = {}
        encoded = {
            cq.channel: cq for cq in encode_query(encoders, text, channels, timings_ms=timings)
        }
        for name, ms in timings.items():
            result.encode_ms[name][query_id] = ms
        dense = next((cq for c, cq in encoded.items() if CHANNEL_ENCODER[c] == "dense"), None)
        if dense is not None:
            result.dense_queries[query_id] = np.asarray(dense.vector, dtype=np.float32)
        result.encoded[query_id] = [encoded[c] for c in channels]
        for channel in channels:
            query = StoreQuery(
                channels=(encoded[channel],),
                limit=depth,
                oversampling=oversampling,
                with_payload=False,
            )
            started = time.perf_counter()
            hits = store.query(query)
            result.search_ms[channel.value][query_id] = (time.perf_counter() - started) * 1000
            result.ranked[channel.value][query_id] = [(h.id, h.score) for h in hits]
        if advance is not None:
            advance(1)
    return result


def documents_of(
    hits: Iterable[tuple[str, float]], point_doc: Mapping[str, str], limit: int
) -> list[str]:
    """Document ids ranked by their best chunk (max aggregation), at most ``limit``.

    ``hits`` are best first, so a document's first appearance is its best chunk. Points
    the mapping does not know (another source's) are skipped.
    """
    docs: dict[str, None] = {}
    for point_id, _ in hits:
        doc = point_doc.get(point_id)
        if doc is not None and doc not in docs:
            docs[doc] = None
            if len(docs) >= limit:
                break
    return list(docs)


def feedback_key(settings: RetrieverSettings) -> str:
    """The key of a setting's feedback round in :attr:`Candidates.feedback`."""
    active = {c: w for c, w in settings.channels.items() if w > 0}
    return settings.model_copy(update={"channels": active}).model_dump_json(
        include={
            "channels",
            "fusion",
            "rrf_k",
            "normalization",
            "prefetch_k",
            "weighting",
            "feedback",
        }
    )


def _first_fusion(
    candidates: Candidates, query_id: str, settings: RetrieverSettings
) -> list[tuple[str, float]]:
    active = {c: w for c, w in settings.channels.items() if w > 0}
    prefetch = settings.prefetch_k or 100
    ranked = {c: candidates.ranked[c][query_id][:prefetch] for c in active}
    return fuse(
        settings.fusion,
        ranked,
        weights=query_weights(ranked, active, settings.weighting, **SPREAD),
        rrf_k=settings.rrf_k,
        normalization=settings.normalization,
    )


def collect_feedback(
    store: VectorStore,
    encoders: EncoderSet,
    candidates: Candidates,
    settings: RetrieverSettings,
    point_doc: Mapping[str, str],
    dense_of: Mapping[str, Sequence[float]],
    *,
    advance: Advance | None = None,
) -> None:
    """Run the feedback round of ``settings`` for every query, as the retriever does.

    The first fusion comes from the cached lists; the feedback chunks' texts are
    fetched from the store, their dense vectors taken from ``dense_of``; the changed
    channels are searched again at the candidates' depth. The lists land in
    ``candidates.feedback[feedback_key(settings)]``; a setting without feedback (or
    whose feedback changes no searched channel) adds nothing.
    """
    feedback = settings.feedback
    if feedback is None:
        return
    key = feedback_key(settings)
    if key in candidates.feedback:
        return
    lists = FeedbackLists()
    active = [Channel(c) for c, w in settings.channels.items() if w > 0]
    if not feedback.channels() & set(active):
        candidates.feedback[key] = lists  # nothing to search again
        return
    for query_id, encoded in candidates.encoded.items():
        started = time.perf_counter()
        fused = _first_fusion(candidates, query_id, settings)
        chosen = feedback_chunks(fused, point_doc, feedback.documents)
        hits = store.retrieve(chosen)
        texts = {h.id: str(h.payload.get(TEXT_KEY, "")) for h in hits}
        queries = [cq for cq in encoded if cq.channel in active]
        new = feedback_queries(
            encoders,
            queries,
            feedback,
            texts=[texts[i] for i in chosen if i in texts],
            dense_vectors=[dense_of[i] for i in chosen if i in dense_of],
        )
        requests = [
            StoreQuery(channels=(cq,), limit=candidates.depth, with_payload=False) for cq in new
        ]
        results = store.query_batch(requests)
        for cq, found in zip(new, results, strict=True):
            lists.ranked.setdefault(cq.channel.value, {})[query_id] = [
                (h.id, h.score) for h in found
            ]
        lists.ms[query_id] = (time.perf_counter() - started) * 1000
        if advance is not None:
            advance(1)
    candidates.feedback[key] = lists


def fused_documents(
    candidates: Candidates,
    query_id: str,
    settings: RetrieverSettings,
    point_doc: Mapping[str, str],
    *,
    limit: int = 100,
) -> tuple[list[str], float]:
    """The document ranking of one query under a fusion setting, and the fusion time (ms).

    Mirrors :class:`~tribrid.retrievers.TribridRetriever`: each active channel's list is
    cut to ``prefetch_k`` (default 100) and fused with the same function, under the
    setting's weighting; a single channel keeps its own order. With feedback, the
    channels it changed use their second-round lists (run first by
    :func:`collect_feedback`), and the time includes that round.
    """
    active = {c: w for c, w in settings.channels.items() if w > 0}
    prefetch = settings.prefetch_k or 100
    second = None
    if settings.feedback is not None:
        second = candidates.feedback.get(feedback_key(settings))
        if second is None:
            raise ValueError(
                "this setting has a feedback round that was not searched; run "
                "collect_feedback(store, encoders, candidates, settings, ...) first"
            )
    if len(active) == 1 and second is None:
        (channel,) = active
        return documents_of(candidates.ranked[channel][query_id], point_doc, limit), 0.0
    started = time.perf_counter()
    extra = 0.0
    lists = {c: candidates.ranked[c][query_id][:prefetch] for c in active}
    if second is not None:
        extra = second.ms.get(query_id, 0.0)
        for channel, by_query in second.ranked.items():
            if channel in lists:
                lists[channel] = by_query[query_id][:prefetch]
    fused = fuse(
        settings.fusion,
        lists,
        weights=query_weights(lists, active, settings.weighting, **SPREAD),
        rrf_k=settings.rrf_k,
        normalization=settings.normalization,
    )
    elapsed = (time.perf_counter() - started) * 1000 + extra
    return documents_of(fused, point_doc, limit), elapsed
