"""The modes ``tribrid eval`` measures, apart from the harness so the CLI can name them
without importing the harness (numpy, the encoders and the stores)."""

from __future__ import annotations

from enum import StrEnum


class EvalMode(StrEnum):
    """What ``tribrid eval`` measures: one channel, or the three fused one way."""

    DENSE = "dense"
    SPLADE = "splade"
    BM25 = "bm25"
    BINARY = "binary"
    HYBRID_RRF = "hybrid-rrf"
    HYBRID_DBSF = "hybrid-dbsf"
    HYBRID_CONVEX = "hybrid-convex"


ALL_MODES = tuple(EvalMode)
