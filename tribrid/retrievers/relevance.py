"""Relevance: one score in [0, 1] per document that means the same for every query.

Fused scores rank documents within one query but say little across queries: RRF
depends on ranks only, DBSF and min-max convex rescale each query's own candidates, so
the best hit of an off-topic query scores as high as an exact match. Relevance instead
reads each channel's score on that channel's **absolute** scale (cosine for dense and
binary, the dot product for SPLADE, the BM25 sum for BM25) through a fixed logistic
curve, ``1 / (1 + exp(-(score - midpoint) / width))``, and averages the channels with
the retriever's weights. A channel that did not return the document counts as score 0
there. A threshold on relevance therefore drops the hits of a query that nothing in the
index answers, whatever the fusion, the candidates or the size of the result.

The curves' midpoints and widths are set for the models tribrid ships (MiniLM, splade-
tiny, BM25 with Qdrant's IDF) from on-topic and off-topic queries; with other models,
pass a calibration of their own (``TribridRetriever(relevance_calibration=...)``).
:data:`RELEVANCE_THRESHOLD` is the documented cut between relevant and not.

Example:
    >>> round(relevance({"dense": 0.7, "bm25": 9.0}, {"dense": 1.0, "bm25": 1.0}), 3)
    0.977
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: Below this, a document is not relevant to the query (see the README's "Relevance").
RELEVANCE_THRESHOLD = 0.5


@dataclass(frozen=True)
class ChannelCalibration:
    """A logistic curve from one channel's raw score to [0, 1].

    Attributes:
        midpoint: The raw score that maps to 0.5.
        width: How fast the curve rises: ``midpoint ± 2·width`` maps to about 0.12 and
            0.88.
    """

    midpoint: float
    width: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.midpoint) and math.isfinite(self.width)) or self.width <= 0:
            raise ValueError(
                f"ChannelCalibration(midpoint={self.midpoint}, width={self.width}): the "
                "midpoint must be finite and the width a finite number above 0"
            )

    def __call__(self, score: float) -> float:
        z = (score - self.midpoint) / self.width
        # Written both ways so that exp never overflows.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)


#: The calibration of the shipped models, by channel name.
DEFAULT_CALIBRATION: Mapping[str, ChannelCalibration] = {
    "dense": ChannelCalibration(midpoint=0.35, width=0.08),
    "binary": ChannelCalibration(midpoint=0.35, width=0.08),  # rescored cosine, as dense
    "splade": ChannelCalibration(midpoint=8.0, width=2.0),
    "bm25": ChannelCalibration(midpoint=4.0, width=1.5),
}


def relevance(
    channel_scores: Mapping[str, float],
    weights: Mapping[str, float],
    calibration: Mapping[str, ChannelCalibration] | None = None,
) -> float:
    """The weighted mean of the calibrated channel scores of one document.

    Args:
        channel_scores: The document's raw score in each channel that returned it.
        weights: The channels searched and their weights (weight 0 is left out).
        calibration: Curves by channel name; default :data:`DEFAULT_CALIBRATION`.

    Raises:
        ValueError: No channel has a weight above 0, or a channel has no curve.
    """
    curves = DEFAULT_CALIBRATION if calibration is None else calibration
    total = 0.0
    weighted = 0.0
    for channel, weight in weights.items():
        if weight <= 0:
            continue
        curve = curves.get(channel)
        if curve is None:
            raise ValueError(
                f"no relevance calibration for channel {channel!r}; give one for each of "
                f"{sorted(weights)} (calibrated channels: {sorted(curves)})"
            )
        total += weight
        weighted += weight * curve(float(channel_scores.get(channel, 0.0)))
    if total == 0:
        raise ValueError("relevance needs at least one channel with a weight above 0")
    return weighted / total


def parse_calibration(value: object) -> dict[str, ChannelCalibration]:
    """A calibration from user input: ``{"dense": (midpoint, width), ...}`` or curves.

    Channels not given keep their default curve.

    Raises:
        ValueError: A channel is unknown or a curve is malformed.
    """
    if not isinstance(value, Mapping):
        raise ValueError(
            "relevance_calibration must map channel names to (midpoint, width), e.g. "
            "{'dense': (0.35, 0.08)}"
        )
    parsed = dict(DEFAULT_CALIBRATION)
    for channel, curve in value.items():
        name = str(channel)
        if name not in DEFAULT_CALIBRATION:
            raise ValueError(
                f"relevance_calibration names unknown channel {name!r}; valid channels: "
                f"{sorted(DEFAULT_CALIBRATION)}"
            )
        if isinstance(curve, ChannelCalibration):
            parsed[name] = curve
        elif isinstance(curve, Mapping):
            parsed[name] = ChannelCalibration(float(curve["midpoint"]), float(curve["width"]))
        else:
            midpoint, width = curve
            parsed[name] = ChannelCalibration(float(midpoint), float(width))
    return parsed


__all__ = [
    "DEFAULT_CALIBRATION",
    "RELEVANCE_THRESHOLD",
    "ChannelCalibration",
    "parse_calibration",
    "relevance",
]
