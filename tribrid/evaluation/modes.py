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
    DEFAULT = "default"


ALL_MODES = tuple(EvalMode)
#: The mode that is the retriever's default (whatever fusion that currently is).
DEFAULT_MODE = EvalMode.DEFAULT.value
#: The modes that search one channel, among which a suite finds the best.
SINGLE_CHANNEL_MODES = (EvalMode.DENSE.value, EvalMode.SPLADE.value, EvalMode.BM25.value)
