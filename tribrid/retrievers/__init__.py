"""LangChain integration: the tribrid retriever, the vector store, and fusion math.

Example:
    >>> from tribrid.retrievers import TribridRetriever, TribridVectorStore  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from tribrid.retrievers.embeddings import EmbeddingsDenseEncoder, EncoderEmbeddings
from tribrid.retrievers.fusion import FusionMethod, Normalization, convex, dbsf, fuse, rrf
from tribrid.retrievers.hybrid import HybridRetriever, RetrievedChunk, TribridRetriever
from tribrid.retrievers.rerank import TribridReranker
from tribrid.retrievers.self_query import METADATA_FIELDS, TribridTranslator
from tribrid.retrievers.vectorstore import TribridVectorStore

__all__ = [
    "METADATA_FIELDS",
    "EmbeddingsDenseEncoder",
    "EncoderEmbeddings",
    "FusionMethod",
    "HybridRetriever",
    "Normalization",
    "RetrievedChunk",
    "TribridReranker",
    "TribridRetriever",
    "TribridTranslator",
    "TribridVectorStore",
    "convex",
    "dbsf",
    "fuse",
    "rrf",
]


def __getattr__(name: str) -> Any:
    # The reranker's former name warns (see tribrid.retrievers.rerank).
    if name == "CrossEncoderReranker":
        from tribrid.retrievers import rerank

        return getattr(rerank, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
