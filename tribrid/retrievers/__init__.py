"""LangChain integration: the tribrid retriever, the vector store, and fusion math.

Example:
    >>> from tribrid.retrievers import TribridRetriever, TribridVectorStore  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tribrid.retrievers.embeddings import EmbeddingsDenseEncoder, EncoderEmbeddings
    from tribrid.retrievers.engine import HybridSearch, RetrievedChunk
    from tribrid.retrievers.fusion import FusionMethod, Normalization, convex, dbsf, fuse, rrf
    from tribrid.retrievers.hybrid import HybridRetriever, TribridRetriever
    from tribrid.retrievers.rerank import TribridReranker
    from tribrid.retrievers.self_query import METADATA_FIELDS, TribridTranslator
    from tribrid.retrievers.vectorstore import TribridVectorStore

# Every name is imported on first use (LangChain, numpy and the store clients load only
# when a retriever is used), from the module that defines it.
_LAZY = {
    "EmbeddingsDenseEncoder": "embeddings",
    "EncoderEmbeddings": "embeddings",
    "FusionMethod": "fusion",
    "Normalization": "fusion",
    "convex": "fusion",
    "dbsf": "fusion",
    "fuse": "fusion",
    "rrf": "fusion",
    "HybridRetriever": "hybrid",
    "HybridSearch": "engine",  # the search without LangChain
    "RetrievedChunk": "engine",
    "TribridRetriever": "hybrid",
    "TribridReranker": "rerank",
    "CrossEncoderReranker": "rerank",  # the reranker's former name warns (see rerank)
    "METADATA_FIELDS": "self_query",
    "TribridTranslator": "self_query",
    "TribridVectorStore": "vectorstore",
}

__all__ = [
    "METADATA_FIELDS",
    "EmbeddingsDenseEncoder",
    "EncoderEmbeddings",
    "FusionMethod",
    "HybridRetriever",
    "HybridSearch",
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
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
