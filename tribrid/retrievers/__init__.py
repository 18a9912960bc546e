"""LangChain integration: the hybrid retriever, the vector store, and fusion math.

Example:
    >>> from tribrid.retrievers import HybridRetriever, TribridVectorStore  # doctest: +SKIP
"""

from __future__ import annotations

from tribrid.retrievers.embeddings import EmbeddingsDenseEncoder, EncoderEmbeddings
from tribrid.retrievers.fusion import FusionMethod, Normalization, convex, dbsf, fuse, rrf
from tribrid.retrievers.hybrid import HybridRetriever, RetrievedChunk
from tribrid.retrievers.rerank import CrossEncoderReranker
from tribrid.retrievers.vectorstore import TribridVectorStore

__all__ = [
    "CrossEncoderReranker",
    "EmbeddingsDenseEncoder",
    "EncoderEmbeddings",
    "FusionMethod",
    "HybridRetriever",
    "Normalization",
    "RetrievedChunk",
    "TribridVectorStore",
    "convex",
    "dbsf",
    "fuse",
    "rrf",
]
