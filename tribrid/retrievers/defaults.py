"""The hybrid retriever's defaults, in one place: the retriever, its config files,
``tribrid search``, ``tribrid eval``'s ``default`` mode and ``tribrid tune``'s baseline.

Each was chosen by leave-one-collection-out over a seven-collection suite (every
candidate scored on each collection; a choice made on six is judged on the seventh):
see benchmarks/results/suite.md. :data:`PREVIOUS_DEFAULTS` are the retriever options
that give back the defaults before that suite (DBSF of the three channels, equal
weights, no feedback, every chunk counted).
"""

from __future__ import annotations

from typing import Any

from tribrid.retrievers.feedback import Feedback
from tribrid.retrievers.fusion import FusionMethod, Weighting

#: Channels and weights searched by default.
DEFAULT_WEIGHTS: dict[str, float] = {"dense": 1.0, "splade": 1.0, "bm25": 1.0}
#: How the channels are fused by default.
DEFAULT_FUSION = FusionMethod.DBSF
#: How the weights follow each query by default.
DEFAULT_WEIGHTING = Weighting.FIXED
#: Each channel's usual z-score of its best hit over its candidates (the shipped models,
#: mean over the suite's queries), against which ``spread`` judges a query's spread.
SPREAD_REFERENCE: dict[str, float] = {"dense": 2.8, "splade": 3.5, "bm25": 3.9}
#: How sharply ``spread`` follows the spread: factor ``(z / reference) ** power``.
SPREAD_POWER = 2.0
#: Pseudo-relevance feedback by default (None: one round).
DEFAULT_FEEDBACK: Feedback | None = None
#: At most this many chunks of one document in a result list by default (None: no cap).
DEFAULT_CHUNKS_PER_DOCUMENT: int | None = 1

#: Options that restore the defaults the retriever had before the suite.
PREVIOUS_DEFAULTS: dict[str, Any] = {
    "channels": {"dense": 1.0, "splade": 1.0, "bm25": 1.0},
    "fusion": FusionMethod.DBSF,
    "weighting": Weighting.FIXED,
    "feedback": None,
    "chunks_per_document": None,
}


def default_feedback() -> Feedback | None:
    """The default feedback options (a fresh reference to the frozen model)."""
    return DEFAULT_FEEDBACK


__all__ = [
    "DEFAULT_CHUNKS_PER_DOCUMENT",
    "DEFAULT_FEEDBACK",
    "DEFAULT_FUSION",
    "DEFAULT_WEIGHTING",
    "DEFAULT_WEIGHTS",
    "PREVIOUS_DEFAULTS",
    "SPREAD_POWER",
    "SPREAD_REFERENCE",
    "default_feedback",
]
