"""The LangChain retriever: :class:`~tribrid.retrievers.engine.HybridSearch` as a
LangChain ``BaseRetriever``.

The search itself (channels searched in one batched store call, fused on the client with
per-channel scores, payloads fetched for the fused top only) lives in
:mod:`tribrid.retrievers.engine`, which imports no LangChain, so that ``tribrid search``
and the server start fast; this module adds ``invoke``/``ainvoke`` and the documents.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from tribrid.retrievers.engine import (
    CALL_OPTIONS,
    PREVIOUS_DEFAULTS,
    SPREAD,
    AsyncStore,
    HybridSearch,
    RetrievedChunk,
    async_store,
)
from tribrid.store.points import INTERNAL_KEYS, TEXT_KEY


class TribridRetriever(HybridSearch, BaseRetriever):
    """Hybrid search over a tribrid store: dense, binary, SPLADE and BM25, fused.

    Every document has ``page_content`` = the chunk text, ``id`` = the point id (or the
    id given to :class:`~tribrid.retrievers.vectorstore.TribridVectorStore`), and ``metadata`` =
    the payload (``path``, ``source``, ``chunk_index``, ``page`` …) plus ``score``
    (fused), ``relevance`` (in [0, 1], comparable across queries), ``channel_scores`` and
    ``channel_ranks`` (per channel, for channels that found it).

    Any field except ``store`` and ``encoders`` can be overridden per call:
    ``retriever.invoke("query", k=3, filter={"filetype": "text/markdown"})``.

    Attributes:
        store: An open tribrid store (``EdgeStore`` or ``QdrantServerStore``).
        encoders: The encoders the index was built with.
        channels: Channels to search and their weights: a mapping such as
            ``{"dense": 1, "bm25": 0.5}``, or a list of names (weight 1). A weight of 0
            leaves the channel out. ``binary`` searches the binary-quantized codes,
            oversampled and rescored.
        fusion: ``rrf`` (reciprocal rank fusion), ``dbsf`` (Qdrant's distribution-based
            score fusion, weighted) or ``convex`` (weighted sum of per-channel
            normalised scores).
        rrf_k: The RRF constant: ``score = Σ w / (rrf_k + rank)``.
        normalization: For ``convex``: ``minmax`` (fused score in [0, 1]) or ``zscore``.
        prefetch_k: Candidates per channel before fusion; default ``max(100, 10·k)``.
        k: Number of documents to return.
        filter: Payload filter: ``{"key": value}`` equality, ``{"key": [a, b]}`` any-of,
            ``{"key": {"gte": 1, "lt": 5}}`` range, all entries must hold; or a raw
            Qdrant filter, passed through: a ``qdrant_client.models.Filter`` or its JSON
            form ``{"must": [...], "should": [...], "must_not": [...]}`` (both
            backends), or a ``qdrant_edge.Filter`` (embedded store only).
        score_threshold: Drop documents whose fused score is below this. Refused with
            ``rrf``, whose scores depend only on ranks and have no absolute meaning.
            A fused score depends on the query's other candidates: to drop what is
            not relevant, use ``relevance_threshold``.
        relevance_threshold: Drop documents whose relevance is below this (in [0, 1];
            :data:`~tribrid.retrievers.relevance.RELEVANCE_THRESHOLD` = 0.5 separates
            relevant from not on the shipped models). The order stays the fused one.
        relevance_calibration: Curves from each channel's raw score to [0, 1], as
            ``{"dense": (midpoint, width), ...}``; default: the shipped models'.
        chunks_per_document: Return at most this many chunks of any one document
            (best first), so that one long document cannot fill the ``k`` slots.
        internal_metadata: Keep tribrid's bookkeeping keys (``source_key``,
            ``document_key``, ``content_hash``, ``langchain_id``) in the metadata.
        oversampling: For ``binary``: candidates from the codes per result, before
            rescoring with the float vectors.
        store_fusion: Let the store fuse (one prefetch query) instead of the client.
            Only for ``rrf`` and for ``dbsf`` with equal weights; documents then carry no
            per-channel scores, and weighted RRF follows Qdrant's formula. With one
            channel the store returns that channel's own hits and scores, unfused
            (``tribrid search --mode bm25`` is this).
        reranker: A cross-encoder that rescores the fused top ``rerank_candidates``;
            the documents are then ordered by it and carry ``relevance_score`` (``score``
            stays the fused one). Off by default: no cross-encoder ships offline.
        rerank_candidates: How many fused candidates to rerank; default
            ``max(k, 30)``.

    Example:
        ::

            retriever = TribridRetriever(
                store=store, encoders=encoders, channels={"dense": 1, "bm25": 0.5}, k=5
            )
            docs = retriever.invoke("binary quantization recall")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    # -- LangChain -----------------------------------------------------------------

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        internal = bool(kwargs.get("internal_metadata", self.internal_metadata))
        return [to_document(chunk, internal=internal) for chunk in self.search(query, **kwargs)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        internal = bool(kwargs.get("internal_metadata", self.internal_metadata))
        chunks = await self.asearch(query, **kwargs)
        return [to_document(chunk, internal=internal) for chunk in chunks]


def to_document(chunk: RetrievedChunk, *, internal: bool = False) -> Document:
    """The LangChain document of a retrieved chunk, with its scores in the metadata.

    Args:
        chunk: The chunk.
        internal: Keep tribrid's bookkeeping keys (:data:`~tribrid.store.points.INTERNAL_KEYS`).
    """
    hidden = {TEXT_KEY} if internal else INTERNAL_KEYS
    metadata = {k: v for k, v in chunk.payload.items() if k not in hidden}
    metadata["score"] = chunk.score
    if chunk.relevance is not None:
        metadata["relevance"] = chunk.relevance
    if chunk.channel_ranks:
        metadata["channel_scores"] = dict(chunk.channel_scores)
        metadata["channel_ranks"] = dict(chunk.channel_ranks)
    if chunk.rerank_score is not None:
        # The key LangChain's own rerankers write, so downstream code reads either alike.
        metadata["relevance_score"] = chunk.rerank_score
    return Document(
        page_content=str(chunk.payload.get(TEXT_KEY, "")),
        id=chunk.document_id,
        metadata=metadata,
    )


#: The retriever's former name, kept so existing code runs unchanged.
HybridRetriever = TribridRetriever

__all__ = [
    "CALL_OPTIONS",
    "PREVIOUS_DEFAULTS",
    "SPREAD",
    "AsyncStore",
    "HybridRetriever",
    "HybridSearch",
    "RetrievedChunk",
    "TribridRetriever",
    "async_store",
    "to_document",
]
