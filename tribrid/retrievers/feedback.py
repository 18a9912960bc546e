"""Pseudo-relevance feedback: a second search with queries moved toward the first results.

The top fused documents of a first search are taken as relevant, and the query is
moved toward them: the dense query by Rocchio's update
``q' = normalise(q + β · mean(v_d))``, the BM25 query by adding the ``terms`` words that
weigh most in those documents (their BM25 term weights, each document's summed to 1,
then added up), each with a weight up to ``β`` (the strongest gets ``β``, the others in
proportion; the query's own words keep weight 1). Qdrant's IDF modifier then weighs
every word by its rarity, as for any BM25 query. Channels without feedback keep their
first-round lists. The rankings are then fused again, the fed-back channels' second
lists replacing their first ones.

The retriever and the evaluation harness both build the second-round queries here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from tribrid.encoders import EncoderSet, SparseVector
from tribrid.store.base import Channel, ChannelQuery


class Feedback(BaseModel):
    """Pseudo-relevance feedback options (see the module docstring).

    Attributes:
        documents: How many top fused documents are taken as relevant (their best chunk).
        dense: Rocchio's ``β`` for the dense query (0: no dense feedback).
        bm25: Weight of the strongest expansion word in the BM25 query (0: none).
        terms: How many expansion words the BM25 query gets.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    documents: int = Field(default=3, ge=1, le=100)
    dense: float = Field(default=0.0, ge=0.0)
    bm25: float = Field(default=0.0, ge=0.0)
    terms: int = Field(default=10, ge=1, le=1000)

    def channels(self) -> set[Channel]:
        """The channels whose query feedback changes."""
        changed = set()
        if self.dense > 0:
            changed |= {Channel.DENSE, Channel.BINARY}
        if self.bm25 > 0:
            changed.add(Channel.BM25)
        return changed


def expand_bm25(
    query: SparseVector, documents: Sequence[SparseVector], *, beta: float, terms: int
) -> SparseVector:
    """The BM25 query plus the ``terms`` strongest words of the feedback documents."""
    weights: dict[int, float] = {}
    for vector in documents:
        total = sum(vector.values)
        if total <= 0:
            continue
        for index, value in zip(vector.indices, vector.values, strict=True):
            weights[index] = weights.get(index, 0.0) + value / total
    pairs = {i: float(v) for i, v in zip(query.indices, query.values, strict=True)}
    ranked = sorted(weights.items(), key=lambda item: (-item[1], item[0]))[:terms]
    if ranked and ranked[0][1] > 0:
        top = ranked[0][1]
        for index, value in ranked:
            pairs[index] = pairs.get(index, 0.0) + beta * value / top
    return SparseVector.from_pairs(pairs)


def rocchio(
    query: Sequence[float], vectors: Sequence[Sequence[float]], *, beta: float
) -> list[float]:
    """``normalise(q + β · mean(vectors))``; the query itself when there is no vector."""
    # Imported here: the retriever settings import this module, and the client of
    # `tribrid serve` needs no numpy.
    import numpy as np

    q = np.asarray(query, dtype=np.float64)
    if not len(vectors):
        return q.tolist()
    moved = q + beta * np.asarray(vectors, dtype=np.float64).mean(axis=0)
    norm = float(np.linalg.norm(moved))
    return (moved / norm if norm > 0 else q).tolist()


def feedback_queries(
    encoders: EncoderSet,
    queries: Sequence[ChannelQuery],
    feedback: Feedback,
    *,
    texts: Sequence[str],
    dense_vectors: Sequence[Sequence[float]],
) -> list[ChannelQuery]:
    """The second-round queries of the channels feedback changes (others are left out).

    Args:
        encoders: The index's encoders (BM25 weighs the feedback texts).
        queries: The first-round channel queries.
        feedback: The options.
        texts: The feedback chunks' texts (for BM25).
        dense_vectors: The feedback chunks' dense vectors (for Rocchio).
    """
    out = []
    changed = feedback.channels()
    bm25_docs: list[SparseVector] | None = None
    for cq in queries:
        if cq.channel not in changed:
            continue
        if cq.channel is Channel.BM25 and isinstance(cq.vector, SparseVector):
            if bm25_docs is None:
                bm25_docs = encoders.bm25.encode_documents(list(texts)) if texts else []
            vector: Sequence[float] | SparseVector = expand_bm25(
                cq.vector, bm25_docs, beta=feedback.bm25, terms=feedback.terms
            )
        elif not isinstance(cq.vector, SparseVector):
            vector = rocchio(cq.vector, dense_vectors, beta=feedback.dense)
        else:
            continue
        out.append(ChannelQuery(cq.channel, vector, cq.weight))
    return out


def feedback_chunks(
    fused: Sequence[tuple[str, float]], document_of: Mapping[str, object], documents: int
) -> list[str]:
    """Ids of the best chunk of each of the top ``documents`` fused documents.

    ``document_of`` maps a chunk id to its document (chunks missing from it count as
    documents of their own).
    """
    chosen: list[str] = []
    seen: set[object] = set()
    for point_id, _ in fused:
        document = document_of.get(point_id, ("point", point_id))
        if document in seen:
            continue
        seen.add(document)
        chosen.append(point_id)
        if len(chosen) >= documents:
            break
    return chosen


__all__ = ["Feedback", "expand_bm25", "feedback_chunks", "feedback_queries", "rocchio"]
