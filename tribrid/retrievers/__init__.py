"""LangChain integration: the hybrid retriever and its fusion math.

Example:
    >>> from tribrid.retrievers import HybridRetriever  # doctest: +SKIP
"""

from __future__ import annotations

from tribrid.retrievers.fusion import FusionMethod, Normalization, convex, dbsf, fuse, rrf
from tribrid.retrievers.hybrid import HybridRetriever, RetrievedChunk

__all__ = [
    "FusionMethod",
    "HybridRetriever",
    "Normalization",
    "RetrievedChunk",
    "convex",
    "dbsf",
    "fuse",
    "rrf",
]
